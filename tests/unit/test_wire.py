"""Packing routed messages for an exchange loses nothing the account side uses."""

import pickle
from decimal import Decimal

from billing.directory import MeterDirectory
from billing.engine import apply, route
from billing.messages import Reading
from billing.rejections import Ignored, Rejected, Rejection, reject
from billing.rules import BillingRules
from pipelines.replay_files import merged_envelopes
from pipelines.routing import INPUT, WAIT
from pipelines.wire import (
    AccountEntries,
    InputEntries,
    RoutedEntries,
    pack_envelope,
    pack_routed,
    unpack_envelope,
    unpack_routed,
)
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


def _routed_entries(sample: str) -> tuple[InputEntries, RoutedEntries]:
    """Every input of a sample as one route bucket sub-batch, and as what routes on."""
    rules = BillingRules()
    directory = MeterDirectory()
    inputs, routed_on = InputEntries(), RoutedEntries()
    for seq, envelope in enumerate(merged_envelopes(CONFORMANCE / sample)):
        inputs.append((INPUT, seq, envelope))
        if seq % 5 == 0:
            inputs.append((WAIT, seq))
        routed = route(envelope, directory, rules)
        if not isinstance(routed, Rejected | Ignored):
            routed_on.append((seq, routed[0], routed[1]))
    return inputs, routed_on


def test_a_route_bucket_sub_batch_crosses_as_columns_and_comes_back_the_same() -> None:
    inputs, _ = _routed_entries("sample1")
    assert any(e[2].raw_base64 or e[2].problem for e in inputs if len(e) == 3)  # hostile lines too
    pickled = pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"unpack_envelope" not in pickled  # not one reduce per envelope
    back = pickle.loads(pickled)  # noqa: S301 - our own bytes
    assert type(back) is InputEntries
    assert back == inputs
    assert pickle.loads(pickle.dumps(InputEntries())) == []  # noqa: S301


def test_what_a_route_bucket_sends_crosses_as_columns_with_everything_in_its_place() -> None:
    rules = BillingRules()
    _, routed_on = _routed_entries("sample1")
    kinds = {type(e[2].message).__name__ for e in routed_on}
    assert kinds == {"Reading", "TopUp", "Redeem", "AccountEvent"}
    back = pickle.loads(pickle.dumps(routed_on, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert type(back) is RoutedEntries
    assert len(back) == len(routed_on)
    pairs = AccountEntries((account_id, item) for _, account_id, item in routed_on)
    pairs_back = pickle.loads(pickle.dumps(pairs, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert type(pairs_back) is AccountEntries
    assert [(a, r.message, r.verdict) for a, r in pairs_back] == [
        (a, r.message, r.verdict) for a, r in pairs
    ]
    why = Rejection("some_reason", "some detail")
    for (seq, account_id, item), (seq2, account_id2, item2) in zip(routed_on, back, strict=True):
        assert (seq2, account_id2) == (seq, account_id)
        assert (item2.message, item2.verdict) == (item.message, item.verdict)
        assert str(item2.message) == str(item.message)  # the Decimal's digits and exponent too
        assert list(reject(item2.envelope, why)) == list(reject(item.envelope, why))
        # Applying either gives the same outcome (the account side uses nothing else).
        assert apply(None, item2, rules).outputs == apply(None, item, rules).outputs


def test_readings_packed_with_their_register_as_text_unpack_to_the_same_integer() -> None:
    """State packed before readings held integers (the register's decimal text) still loads."""
    rules = BillingRules()
    directory = MeterDirectory()
    checked = 0
    for envelope in merged_envelopes(CONFORMANCE / "sample1"):
        routed = route(envelope, directory, rules)
        if isinstance(routed, Rejected | Ignored) or type(routed[1].message) is not Reading:
            continue
        item = routed[1]
        packed = list(pack_routed(item))
        assert packed[-2] == item.message.milli  # an int now
        packed[-2] = str(Decimal(item.message.milli).scaleb(-3))  # as the text was packed
        back = unpack_routed(tuple(packed))
        assert back.message == item.message and type(back.message.milli) is int
        checked += 1
    assert checked > 100
