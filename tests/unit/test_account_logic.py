"""Live billing keys its accounts one by one: that step gives what the bucket step gives.

``AccountLogic`` (one account, live) and ``AccountsLogic`` (a bucket of accounts, the replay)
apply batches with the same loop; their snapshots are the same pickle, so a recovery store
written by either resumes the other.
"""

import pickle
from collections import defaultdict
from dataclasses import fields

import pytest

from billing.directory import MeterDirectory
from billing.engine import Routed, route
from billing.rejections import Ignored, Rejected
from billing.rules import BillingRules
from billing.state import AccountState
from pipelines.billing import AccountLogic, AccountsLogic
from pipelines.replay_files import merged_envelopes
from tests.paths import CONFORMANCE

RULES = BillingRules()


def _by_account(sample: str) -> dict[str, list[tuple[str, Routed]]]:
    """Every routed message of a conformance set, per account, in input order."""
    directory = MeterDirectory()
    batches: dict[str, list[tuple[str, Routed]]] = defaultdict(list)
    for envelope in merged_envelopes(CONFORMANCE / sample):
        routed = route(envelope, directory, RULES)
        if not isinstance(routed, Rejected | Ignored):
            batches[routed[0]].append(routed)
    return batches


def _fields(snapshot: bytes) -> dict[str, list[str]]:
    """A snapshot's states, field by field (equal states may pickle to other bytes)."""
    states = pickle.loads(snapshot)  # noqa: S301
    return {
        account_id: [repr(getattr(state, f.name)) for f in fields(AccountState) if f.compare]
        for account_id, state in states.items()
    }


def _flat(emitted: object) -> list:
    return [output for outputs in emitted for output in outputs]  # type: ignore[attr-defined]


def _run(first: type, then: type, batch: list[tuple[str, Routed]]) -> tuple[list, dict, bool]:
    """Half the batch in a ``first``, resumed from its snapshot in a ``then`` for the rest.

    Then the end of the input, and the last message again (refused as a duplicate, or
    applied again if it is not a reading: either way the state's answer).
    """
    half = len(batch) // 2
    outputs: list = []
    logic = first(RULES, None, close_at_eof=True)
    for part in (batch[:half], batch[half:]):
        if part:
            outputs += _flat(logic.on_item(part)[0])
        logic = then(RULES, logic.snapshot(), close_at_eof=True)
    outputs += _flat(logic.on_eof()[0])
    emitted, discard = logic.on_item(batch[-1:])
    return outputs + _flat(emitted), _fields(logic.snapshot()), discard


@pytest.mark.parametrize("sample", ["sample1", "sample2"])
def test_one_account_steps_and_resumes_as_the_bucket_step_does(sample: str) -> None:
    batches = _by_account(sample)
    assert len(batches) > 3
    for account_id, batch in batches.items():
        expected = _run(AccountsLogic, AccountsLogic, batch)
        for first, then in ((AccountLogic, AccountLogic), (AccountsLogic, AccountLogic)):
            assert _run(first, then, batch) == expected, account_id
        assert _run(AccountLogic, AccountsLogic, batch) == expected, account_id
        assert set(expected[1]) <= {account_id}


def test_a_fresh_account_step_has_nothing_to_close_or_keep() -> None:
    logic = AccountLogic(RULES, None, close_at_eof=True)
    assert logic.on_eof() == ((), False)
    assert pickle.loads(logic.snapshot()) == {}  # noqa: S301
    assert vars(logic) == {}  # every field in a slot: no per-account dict
