"""Billing rules called as plain functions, with values worked out by hand (SPEC S5, S6, S14).

The replay tests in test_account_rules.py check the same rules end to end; these pin each
rule's arithmetic and edge cases where a JSONL round trip would only obscure them.
"""

from __future__ import annotations

import json
import pickle
from datetime import date
from decimal import Decimal

import pytest

from billing.alerts import balance_alerts, days_left
from billing.cuts import in_window, next_window_opening
from billing.days import overdraft_limit
from billing.directory import MeterDirectory
from billing.emitter import Emitter
from billing.engine import apply, route
from billing.lifecycle import new_account
from billing.messages import Envelope, Reading, TopUp
from billing.numbers import to_milli
from billing.outputs import Row, TopicMessage
from billing.points import basic_points, daily_points, on_day_close, redemption_value
from billing.readings import Accepted, check_reading, remember
from billing.rebates import grant_rebates
from billing.rejections import Rejected, Rejection
from billing.rules import BillingRules, DisconnectWindow, RebateCampaign
from billing.state import AccountState
from tests import billing_harness as harness
from tests.billing_harness import at

D = Decimal
RULES = BillingRules()


def account(balance: str = "100.00") -> AccountState:
    """Account A1 on meter M1, opened Monday 2026-03-02 00:00 on the tiered plan."""
    return new_account(
        account_id="A1",
        meter_id="M1",
        plan_id="zhejiang-tiered",
        ts=at("2026-03-02T00:00"),
        opening_balance=D(balance),
        ytd_kwh=D(0),
        threshold=D("20.00"),
        rules=RULES,
    )


def rows(out: Emitter, table: str) -> list[dict]:
    return [o.values for o in out.outputs if isinstance(o, Row) and o.table == table]


def notices(out: Emitter) -> list[tuple[str, dict]]:
    return [
        (o.value["type"], o.value["data"])
        for o in out.outputs
        if isinstance(o, TopicMessage) and o.topic == "notifications"
    ]


# --- overdraft limit (S5, S14.17) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("charges", "limit"),
    [
        ([], "10.00"),  # no closed day yet
        (["1.00"] * 5, "10.00"),  # 3 × 1.00 = 3.00, clamped up to 10.00
        (["10.00", "20.00"], "45.00"),  # 3 × 15.00
        (["5.00", "5.01"], "15.02"),  # 3 × 5.005 = 15.015, half-up
        (["0.00", "10.00", "20.00"], "30.00"),  # zero days count: 3 × 30.00 / 3
        (["50.00"] * 3, "100.00"),  # 3 × 50.00 = 150.00, clamped down
        (["100.00"] + ["4.00"] * 30, "12.00"),  # only the last 30: 3 × 4.00
    ],
)
def test_overdraft_limit(charges: list[str], limit: str) -> None:
    assert overdraft_limit([D(c) for c in charges], RULES) == D(limit)


# --- rebates (S6, S14.18, billing-rules #23) ----------------------------------------------


def topup(payment_id: str, amount: str, when: str, channel: str = "app") -> TopUp:
    return TopUp(payment_id, "A1", D(amount), channel, at(when))


def test_default_rebate_once_a_calendar_month() -> None:
    state, out = account(), Emitter()
    assert grant_rebates(state, out, topup("P1", "499.99", "2026-03-02T10:00"), RULES) == 0
    assert grant_rebates(state, out, topup("P2", "500.00", "2026-03-02T10:00", "bank"), RULES) == 0
    assert grant_rebates(state, out, topup("P3", "500.00", "2026-03-05T10:00"), RULES) == D(30)
    assert grant_rebates(state, out, topup("P4", "800.00", "2026-03-31T23:59"), RULES) == 0
    assert grant_rebates(state, out, topup("P5", "500.00", "2026-04-01T00:00"), RULES) == D(30)
    assert [(r["entry_id"], r["amount"], r["balance_after"]) for r in rows(out, "ledger")] == [
        ("rebate:A1:P3:default", D("30.00"), D("130.00")),
        ("rebate:A1:P5:default", D("30.00"), D("160.00")),
    ]


def test_every_matching_campaign_applies_within_its_dates() -> None:
    small = RebateCampaign(
        "small",
        frozenset({"alipay", "app"}),
        D("100.00"),
        D("5.00"),
        per_account_per_month=2,
        from_day=date(2026, 3, 3),
        to_day=date(2026, 3, 4),
    )
    big = RebateCampaign("big", frozenset({"app"}), D("500.00"), D("30.00"))
    rules = BillingRules(campaigns=(small, big))
    state, out = account(), Emitter()
    # Mar 2 is before `small` opens: only `big`.
    assert grant_rebates(state, out, topup("P1", "500.00", "2026-03-02T10:00"), rules) == D(30)
    # Mar 3 and Mar 4 (the inclusive end): `small` twice, `big` already used this month.
    assert grant_rebates(state, out, topup("P2", "500.00", "2026-03-03T10:00"), rules) == D(5)
    assert grant_rebates(state, out, topup("P3", "100.00", "2026-03-04T23:00"), rules) == D(5)
    # A third `small` in March exceeds its per-month limit of 2.
    assert grant_rebates(state, out, topup("P4", "100.00", "2026-03-04T23:30"), rules) == 0
    assert [r["entry_id"] for r in rows(out, "ledger")] == [
        "rebate:A1:P1:big",
        "rebate:A1:P2:small",
        "rebate:A1:P3:small",
    ]


# --- points (S6, S14.18) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "available", "points"),
    [("99.99", "0.00", 99), ("500.00", "12.34", 500), ("500.00", "-0.01", 0), ("0.50", "1", 0)],
)
def test_basic_points(amount: str, available: str, points: int) -> None:
    assert basic_points(D(amount), D(available)) == points


@pytest.mark.parametrize(
    ("balance", "points"), [("299.99", 2), ("300.00", 3), ("99.99", 0), ("-500.00", 0)]
)
def test_daily_points(balance: str, points: int) -> None:
    assert daily_points(D(balance)) == points


def test_redemption_value() -> None:
    assert redemption_value(150) == D("1.50")
    assert redemption_value(1) == D("0.01")


def test_dec_31_adds_its_daily_points_then_expires_the_year_before() -> None:
    state, out = account("250.00"), Emitter()
    state.wallet.lots = {2025: 120, 2026: 30}
    on_day_close(state, out, date(2026, 12, 31), at("2027-01-01T00:00"))
    # 250.00 held: 2 daily points into the 2026 lot (152 held), then the 2025 lot expires.
    assert [
        (r["entry_id"], r["points"], r["balance_after"]) for r in rows(out, "points_ledger")
    ] == [
        ("daily:A1:2026-12-31", 2, 152),
        ("expiry:A1:2025", -120, 32),
    ]
    assert state.wallet.lots == {2026: 32}
    assert notices(out) == []


def test_dec_1_warns_of_the_points_that_will_expire() -> None:
    state, out = account("50.00"), Emitter()  # under 100.00: no daily points
    state.wallet.lots = {2024: 7, 2025: 120, 2026: 30}
    on_day_close(state, out, date(2026, 12, 1), at("2026-12-02T00:00"))
    assert rows(out, "points_ledger") == []
    assert notices(out) == [("points_expiring", {"points": 127, "expires_on": "2026-12-31"})]


# --- alerts (S5, S14.12, S14.13) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("charges", "available", "left"),
    [
        ([], "19.00", None),
        (["0.00", "0.00"], "19.00", None),
        (["2.00", "3.00"], "19.00", 7),  # floor(19 × 2 / 5.00) = floor(7.6)
        (["1.00"] * 8, "6.99", 6),  # k = 7: floor(6.99 × 7 / 7.00)
        (["2.00", "3.00"], "-4.00", 0),  # never below 0
    ],
)
def test_days_left(charges: list[str], available: str, left: int | None) -> None:
    state = account()
    state.charges.extend(int(D(c) * 100) for c in charges)  # fen
    assert days_left(state, D(available), RULES) == left


def test_low_balance_and_arrears_fire_once_per_crossing() -> None:
    state = account("25.00")
    state.charges.extend([200, 300])  # 2.00 and 3.00, in fen
    fired = []
    for balance in ["19.00", "18.00", "20.00", "19.99", "-0.01", "-5.00", "0.00", "-1.00"]:
        state.balance = D(balance)
        out = Emitter()
        balance_alerts(state, out, RULES, at("2026-03-02T10:00"), "test", state.available_units)
        fired.append([kind for kind, _ in notices(out)])
    assert fired == [
        ["low_balance"],  # 19.00 < 20.00: fires, days_left floor(19 × 2 / 5) = 7
        [],  # still below: quiet
        [],  # 20.00 re-arms
        ["low_balance"],
        ["arrears"],  # below 0 for the first time; low_balance still disarmed
        [],
        [],  # 0.00 re-arms arrears (low_balance stays disarmed below 20.00)
        ["arrears"],
    ]


def test_low_balance_data() -> None:
    state = account("25.00")
    state.charges.extend([200, 300])  # 2.00 and 3.00, in fen
    state.balance = D("19.004")
    out = Emitter()
    balance_alerts(state, out, RULES, at("2026-03-02T10:00"), "test", state.available_units)
    assert notices(out) == [
        ("low_balance", {"available": "19.00", "threshold": "20.00", "days_left": 7})
    ]


# --- the cut window (S5, S14.15) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "inside", "opens"),
    [
        ("2026-03-02T07:59:59", False, "2026-03-02T08:00"),  # Monday before the window
        ("2026-03-02T08:00", True, "2026-03-03T08:00"),
        ("2026-03-06T16:59:59", True, "2026-03-09T08:00"),  # Friday, last second
        ("2026-03-06T17:00", False, "2026-03-09T08:00"),  # window end is exclusive
        ("2026-03-07T12:00", False, "2026-03-09T08:00"),  # Saturday
    ],
)
def test_window(moment: str, inside: bool, opens: str) -> None:
    window = DisconnectWindow()
    assert in_window(window, at(moment)) is inside
    assert next_window_opening(window, at(moment)) == at(opens)


def test_holidays_close_the_window() -> None:
    window = DisconnectWindow(holidays=frozenset({date(2026, 3, 9)}))
    assert not in_window(window, at("2026-03-09T10:00"))
    assert next_window_opening(window, at("2026-03-06T17:00")) == at("2026-03-10T08:00")


# --- the reading checks, in S14.3 order ----------------------------------------------------


def read(when: str, kwh: str, meter_id: str = "M1") -> Reading:
    return Reading(meter_id, at(when), to_milli(D(kwh)))


def metered(kwh: str = "100.000") -> AccountState:
    """A1 with an accepted baseline of ``kwh`` at 10:00."""
    state = account()
    remember(state, at("2026-03-02T10:00"), int(D(kwh) * 1000), RULES)
    return state


def reason(verdict: Accepted | Rejection) -> str:
    return verdict.reason if isinstance(verdict, Rejection) else "accepted"


def test_first_reading_is_the_uncharged_baseline() -> None:
    assert check_reading(account(), read("2026-03-02T10:00", "100.000"), RULES) == Accepted(100_000)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (read("2026-03-02T10:00", "100.0"), "duplicate"),  # energies compare numerically
        (read("2026-03-02T10:00", "100.001"), "conflict"),
        (read("2026-03-02T09:45", "99.000"), "out_of_order"),
        (read("2026-03-02T10:15", "99.999"), "meter_regression"),
        (read("2026-03-02T10:15", "110.001"), "implausible_jump"),  # 40.004 kW > 40
        (read("2026-03-02T10:15", "110.000"), "accepted"),  # exactly 40 kW is allowed
        (read("2026-03-02T10:15", "101.000", "M2"), "out_of_order"),  # not the current meter
    ],
)
def test_reading_checks(reading: Reading, expected: str) -> None:
    assert reason(check_reading(metered(), reading, RULES)) == expected


def test_no_state_is_unknown_meter() -> None:
    assert reason(check_reading(None, read("2026-03-02T10:00", "1"), RULES)) == "unknown_meter"


def test_a_rollover_is_charged_across_the_register_maximum() -> None:
    # 999 999.900 → 0.100 kWh in 15 minutes: 0.100 + 1 000 000 − 999 999.900 = 0.200 kWh.
    verdict = check_reading(metered("999999.900"), read("2026-03-02T10:15", "0.100"), RULES)
    assert verdict == Accepted(100, at("2026-03-02T10:00"), 200)


# --- applied or rejected, as values (S9) --------------------------------------------------


def test_apply_says_applied_or_rejected() -> None:
    directory, state = MeterDirectory(), None
    reasons = []
    for position, (topic, message) in enumerate(
        [
            ("accounts", harness.open_account("A1", "M1", "zhejiang-tiered", "2026-03-02T00:00")),
            ("readings", harness.reading("M1", "2026-03-02T10:00", "100.000")),
            ("readings", harness.reading("M1", "2026-03-02T10:15", "110.001")),  # 40.004 kW
            ("readings", harness.reading("M2", "2026-03-02T10:15", "1.000")),
        ]
    ):
        envelope = Envelope.decode(
            topic, f"{topic}:{position}", json.dumps(message), at("2026-03-02T10:00")
        )
        routed = route(envelope, directory, RULES)
        if isinstance(routed, Rejected):
            assert pickle.loads(pickle.dumps(routed)).reason == routed.reason
            reasons.append(("route", routed.reason))
            continue
        outcome = apply(state, routed[1], RULES)
        state = outcome.state
        reasons.append(("apply", outcome.rejection.reason if outcome.rejection else None))
        if outcome.rejection is not None:
            # The anomaly stays, and the rejection is recorded last.
            tables = [o.table for o in outcome.outputs if isinstance(o, Row)]
            assert tables == ["events", "rejected"]
    assert reasons == [
        ("apply", None),
        ("apply", None),
        ("apply", "implausible_jump"),
        ("route", "unknown_meter"),
    ]
