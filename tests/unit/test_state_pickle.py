"""Account states pickle compactly and come back exactly (recovery snapshots, SPEC S10)."""

import pickle
from dataclasses import fields
from datetime import UTC, timedelta
from decimal import Decimal

from billing.directory import MeterDirectory
from billing.engine import apply, route
from billing.rejections import Rejected
from billing.rules import BillingRules
from billing.state import AccountState
from pipelines.replay_files import merged_envelopes
from tests.paths import CONFORMANCE


def same(a: AccountState, b: AccountState) -> bool:
    """Equal field by field, timestamps in the very same zone object, amounts digit for digit."""
    for field in (f for f in fields(AccountState) if f.compare):  # not a cache of another
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x != y or (not isinstance(x, frozenset) and repr(x) != repr(y)):  # sets: no order
            return False
    return a.opened_at.tzinfo is b.opened_at.tzinfo and a.day.end.tzinfo is b.day.end.tzinfo


def test_every_state_of_both_conformance_sets_round_trips_exactly() -> None:
    rules = BillingRules()
    checked = 0
    for name in ("sample1", "sample2"):
        directory, states = MeterDirectory(), {}
        for number, envelope in enumerate(merged_envelopes(CONFORMANCE / name)):
            routed = route(envelope, directory, rules)
            if isinstance(routed, Rejected):
                continue
            account_id, item = routed
            state = apply(states.get(account_id), item, rules).state
            if state is None:
                continue
            states[account_id] = state
            if number % 7 == 0:
                back = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
                assert same(state, back), account_id
                checked += 1
        for state in states.values():  # closed, disconnected, with points, requests …
            assert same(state, pickle.loads(pickle.dumps(state)))  # noqa: S301
    assert checked > 1000


def _final_states(sample: str) -> dict[str, AccountState | None]:
    """Every account of a conformance set as its last message left it."""
    rules = BillingRules()
    directory, states = MeterDirectory(), {}
    for envelope in merged_envelopes(CONFORMANCE / sample):
        routed = route(envelope, directory, rules)
        if not isinstance(routed, Rejected):
            account_id, item = routed
            states[account_id] = apply(states.get(account_id), item, rules).state or states.get(
                account_id
            )
    return states


def test_a_timestamp_in_another_zone_and_odd_amounts_come_back_as_they_were() -> None:
    states = _final_states("sample1")
    state = next(s for s in states.values() if s is not None)
    state.request = ("R-1", state.opened_at.astimezone(UTC) + timedelta(microseconds=7))
    state.balance = Decimal("-0.10")
    state.auto_topup_amount = Decimal("1E+2")
    back = pickle.loads(pickle.dumps(state))  # noqa: S301
    assert same(state, back)
    assert back.request is not None and back.request[1].tzinfo is UTC
    assert str(back.auto_topup_amount) == "1E+2"


def test_a_snapshot_of_the_earlier_shape_loads_and_keeps_the_last_30_charges() -> None:
    """Earlier snapshots held a set of payment ids; any snapshot keeps 30 charges at most."""
    states = _final_states("sample1")
    state = next(s for s in states.values() if s is not None and s.payment_ids)
    packed = list(state.__getstate__())
    assert packed[26:28] == [30, state.charges]
    packed[27] = list(range(45))  # more than any snapshot holds
    packed[33] = set(state.payment_ids)  # how snapshots before frozensets held them
    back = AccountState.__new__(AccountState)
    back.__setstate__(tuple(packed))
    assert back.charges == list(range(15, 45))
    assert type(back.payment_ids) is frozenset
    assert back.payment_ids == state.payment_ids
    empty = [s.payment_ids for s in states.values() if s is not None and not s.payment_ids]
    assert len(empty) >= 2
    assert all(ids is empty[0] for ids in empty)  # one object for every account without any


def test_a_snapshot_with_the_open_days_cost_as_decimal_text_loads_it_exactly() -> None:
    """Snapshots before integer costs held the open day's exact cost as a decimal's text."""
    states = _final_states("sample1")
    state = next(s for s in states.values() if s is not None and s.day.cost)
    packed = list(state.__getstate__())
    assert packed[13] == state.day.cost and type(packed[13]) is int  # 10^-7 yuan
    packed[13] = str(Decimal(state.day.cost).scaleb(-7))  # e.g. "1.2345670"
    back = AccountState.__new__(AccountState)
    back.__setstate__(tuple(packed))
    assert back.day.cost == state.day.cost
    assert back.available == state.available
    packed[13] = "0.0000001"
    back.__setstate__(tuple(packed))
    assert back.day.cost == 1
    assert back.available == state.balance - Decimal("0.0000001")
