"""Packing routed messages for an exchange loses nothing the account side uses."""

import pickle

from billing.directory import MeterDirectory
from billing.engine import route
from billing.rejections import Rejected, Rejection, reject
from billing.rules import BillingRules
from pipelines.replay_files import merged_envelopes
from pipelines.wire import pack_envelope, pack_routed, unpack_envelope, unpack_routed
from tests.paths import CONFORMANCE


def test_every_packed_message_unpacks_to_the_same_message_and_refusal() -> None:
    rules = BillingRules()
    directory = MeterDirectory()
    kinds = set()
    for envelope in merged_envelopes(CONFORMANCE / "sample1"):
        assert unpack_envelope(pack_envelope(envelope)) == envelope
        routed = route(envelope, directory, rules)
        if isinstance(routed, Rejected):
            continue
        _, item = routed
        back = unpack_routed(pack_routed(item))
        pickled = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        assert b"unpack_routed" in pickled  # crosses as the packed tuple
        again = pickle.loads(pickled)  # noqa: S301 - our own bytes
        assert (again.message, again.verdict) == (item.message, item.verdict)
        assert pickle.loads(pickle.dumps(envelope)) == envelope  # noqa: S301
        assert back.message == item.message
        assert type(back.message.ts) is type(item.message.ts)
        assert back.verdict == item.verdict
        why = Rejection("some_reason", "some detail")
        assert list(reject(back.envelope, why)) == list(reject(item.envelope, why))
        kinds.add(type(item.message).__name__)
    assert kinds == {"Reading", "TopUp", "Redeem", "AccountEvent"}
