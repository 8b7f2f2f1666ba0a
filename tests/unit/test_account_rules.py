"""Balance, alerts, cuts, auto top-up, rebates, points, close and replacement (SPEC S5, S6, S14).

Most scenarios use a configured flat plan ``unit`` at 1.00 yuan/kWh in every tier, so that
kWh and yuan are the same number and the money arithmetic stays readable. 2026-03-02 is a
Monday; the disconnection window is Monday–Friday [08:00, 17:00) local time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.clock import parse_ts
from billing.outputs import TopicMessage
from billing.rules import BillingRules, DisconnectWindow, RebateCampaign
from billing.tariffs import BUILTIN_PLANS, ZHEJIANG_BOUNDS, Plan
from tests import billing_harness as harness
from tests.billing_harness import Replay, at, replace_meter

D = Decimal
UNIT = Plan("unit", ZHEJIANG_BOUNDS, {"flat": (D("1.00"), D("1.00"), D("1.00"))})
DEAR = Plan("dear", ZHEJIANG_BOUNDS, {"flat": (D("100.00"), D("100.00"), D("100.00"))})
RULES = BillingRules(plans={**BUILTIN_PLANS, "unit": UNIT, "dear": DEAR})


# --- the shared harness with this file's defaults: account A1, meter M1, plan "unit" ----------


def replay(tmp_path: Path, *, rules: BillingRules = RULES, **files: Iterable[Any]) -> Replay:
    """Run the input files with the ``unit`` and ``dear`` plans configured."""
    return harness.replay(tmp_path, rules=rules, **files)


def open_account(
    when: str,
    opening: str,
    account_id: str = "A1",
    meter_id: str = "M1",
    plan: str = "unit",
    **extra: Any,
) -> dict:
    return harness.open_account(account_id, meter_id, plan, when, opening_balance=opening, **extra)


def reading(when: str, kwh: str, meter_id: str = "M1") -> dict:
    return harness.reading(meter_id, when, kwh)


def topup(
    payment_id: str,
    amount: str,
    when: str,
    channel: str = "counter",
    account_id: str = "A1",
    **extra: str,
) -> dict:
    return harness.topup(payment_id, account_id, amount, when, channel, **extra)


def redeem(payment_id: str, points: int, when: str, account_id: str = "A1") -> dict:
    return harness.redeem(payment_id, account_id, points, when)


def event(kind: str, when: str, account_id: str = "A1", **extra: Any) -> dict:
    return harness.event(kind, account_id, when, **extra)


def times(items: list[dict[str, Any]]) -> list[datetime]:
    return [parse_ts(i["ts"]) for i in items]


def data_money(notes: Iterable[dict[str, Any]], name: str) -> list[Decimal]:
    return [D(n["data"][name]) for n in notes]


def ledger(result: Replay, account_id: str = "A1") -> list[tuple]:
    return [
        (r["kind"], r["amount"], r["balance_after"], r["ref"])
        for r in result.rows("ledger", account_id=account_id)
    ]


def actions(result: Replay) -> list[tuple[str, datetime]]:
    return [(c["action"], parse_ts(c["ts"])) for c in result.commands()]


def points(result: Replay, account_id: str = "A1") -> list[tuple]:
    return [
        (r["kind"], r["points"], r["balance_after"])
        for r in result.rows("points_ledger", account_id=account_id)
    ]


MON = "2026-03-02"  # a Monday


# --- low balance and arrears (S5, S14.12, S14.13) ---------------------------------------------


def test_low_balance_fires_once_per_crossing_and_rearms_at_the_threshold(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "50.00")],
        payments=[topup("P1", "2.00", f"{MON}T13:00")],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T10:00", "25.000"),  # available 50 − 25 = 25 ≥ 20
            reading(f"{MON}T11:00", "31.000"),  # 19 < 20 → low_balance
            reading(f"{MON}T12:00", "32.000"),  # 18: still below, quiet
            # 13:00 top-up 2.00 → 20.00 ≥ 20: re-armed
            reading(f"{MON}T14:00", "33.000"),  # 19 → low_balance again
        ],
    )
    low = result.notes("low_balance")
    assert times(low) == [at(f"{MON}T11:00"), at(f"{MON}T14:00")]
    assert data_money(low, "available") == [D("19.00"), D("19.00")]
    assert data_money(low, "threshold") == [D("20.00"), D("20.00")]
    # No closed day yet: days_left is absent.
    assert all("days_left" not in n["data"] for n in low)


def test_low_balance_days_left_uses_the_last_seven_charges(tmp_path: Path) -> None:
    # Day charges: Mar 2 = 70, Mar 3 … Mar 9 = 5 each (8 closed days); balance 200 − 105 = 95.
    readings = [reading(f"{MON}T00:00", "0.000"), reading("2026-03-03T00:00", "70.000")]
    readings += [reading(f"2026-03-{d:02d}T00:00", str(70 + 5 * (d - 3))) for d in range(4, 11)]
    # Mar 10 12:00: 80 kWh more → available 95 − 80 = 15 < 20.
    readings.append(reading("2026-03-10T12:00", "185.000"))
    result = replay(tmp_path, accounts=[open_account(f"{MON}T00:00", "200.00")], readings=readings)
    [low] = result.notes("low_balance")
    # k = min(7, 8) = 7; last 7 charges sum to 35: floor(15 × 7 ÷ 35) = 3
    # (the mean of all 8 days, 105 / 8, would give 1).
    assert data_money([low], "available") == [D("15.00")]
    assert low["data"]["days_left"] == 3
    assert parse_ts(low["ts"]) == at("2026-03-10T12:00")


def test_days_left_is_never_negative(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "30.00")],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading("2026-03-03T00:00", "5.000"),
            reading("2026-03-03T10:00", "33.000"),
        ],  # available 25 − 28 = −3
    )
    [low] = result.notes("low_balance")
    assert D(low["data"]["available"]) == D("-3.00")
    assert low["data"]["days_left"] == 0


def test_days_left_absent_when_the_closed_days_cost_nothing(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "25.00")],
        readings=[
            reading("2026-03-03T00:00", "0.000"),  # baseline: Mar 2 closes at 0.00
            reading("2026-03-03T01:00", "6.000"),
        ],  # 19 < 20
    )
    [low] = result.notes("low_balance")
    assert "days_left" not in low["data"]


def test_custom_threshold_from_open(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "50.00", low_balance_threshold="45.00")],
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T01:00", "6.000")],
    )
    [low] = result.notes("low_balance")
    assert low["data"]["threshold"] == "45.00" and D(low["data"]["available"]) == D("44.00")


def test_arrears_fires_once_per_crossing_and_rearms_at_zero(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "10.00")],
        payments=[topup("P1", "3.00", f"{MON}T03:00")],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T01:00", "12.000"),  # available −2 → arrears (and low_balance)
            reading(f"{MON}T02:00", "13.000"),  # −3: quiet
            # 03:00 top-up 3.00 → 0.00 ≥ 0: arrears re-armed (low_balance is not: 0 < 20)
            reading(f"{MON}T04:00", "14.000"),  # −1 → arrears again
        ],
    )
    arrears = result.notes("arrears")
    assert times(arrears) == [at(f"{MON}T01:00"), at(f"{MON}T04:00")]
    assert data_money(arrears, "available") == [D("-2.00"), D("-1.00")]
    # No closed day: overdraft limit is 10.00.
    assert data_money(arrears, "overdraft_limit") == [D("10.00"), D("10.00")]
    assert times(result.notes("low_balance")) == [at(f"{MON}T01:00")]
    # A top-up made while available < 0 earns no basic points.
    [received] = result.notes("topup_received")
    assert received["data"]["points"] == 0
    assert result.rows("points_ledger") == []
    assert result.final()["status"] == "arrears"


def test_no_alert_after_open_update_or_zero_consumption(tmp_path: Path) -> None:
    # Opened below the threshold: nothing until the available balance changes.
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "5.00"),
            event("update", f"{MON}T01:00", low_balance_threshold="30.00"),
        ],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T02:00", "0.000"),
            reading(f"{MON}T03:00", "1.000"),
        ],
    )
    [low] = result.notes("low_balance")
    assert parse_ts(low["ts"]) == at(f"{MON}T03:00")
    assert low["data"]["threshold"] == "30.00"


def test_decisions_use_the_exact_available_balance(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "25.00")],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T01:00", "5.004"),  # 19.996 < 20 (shown as 20.00)
            reading(f"{MON}T02:00", "25.004"),  # −0.004 < 0 (shown as 0.00, not −0.00)
            reading(f"{MON}T09:00", "35.004"),
        ],  # −10.004 < −10.00 → cut
    )
    [low] = result.notes("low_balance")
    assert (parse_ts(low["ts"]), low["data"]["available"]) == (at(f"{MON}T01:00"), "20.00")
    [arrears] = result.notes("arrears")
    assert (parse_ts(arrears["ts"]), arrears["data"]["available"]) == (at(f"{MON}T02:00"), "0.00")
    [cut] = result.commands("disconnect")
    assert parse_ts(cut["ts"]) == at(f"{MON}T09:00")
    assert result.notes("disconnected")[0]["data"]["available"] == "-10.00"


# --- overdraft limit (S5, S14.17) -------------------------------------------------------------


def _daily(readings: list[tuple[str, str]]) -> list[dict]:
    return [reading(when, kwh) for when, kwh in readings]


@pytest.mark.parametrize(
    ("name", "readings", "limit"),
    [
        # Charges 2.00 (Mar 2) and 0.00 (Mar 3, closed at end of input): 3 × 1.00 = 3 → 10.00.
        ("floor", [(f"{MON}T00:00", "0"), ("2026-03-03T00:00", "2")], "10.00"),
        # Charges 12, 6, 0 (zero day included): 3 × 18 / 3 = 18.00 (without it: 27.00).
        (
            "zero-days-count",
            [(f"{MON}T00:00", "0"), ("2026-03-03T00:00", "12"), ("2026-03-04T00:00", "18")],
            "18.00",
        ),
        # Charges 5.00 and 5.01: 3 × 10.01 / 2 = 15.015 → half-up 15.02.
        (
            "rounding",
            [(f"{MON}T00:00", "0"), ("2026-03-03T00:00", "5"), ("2026-03-03T10:00", "10.01")],
            "15.02",
        ),
        # Charges 40, 40, 40: 3 × 40 = 120 → capped at 100.00.
        (
            "cap",
            [
                (f"{MON}T00:00", "0"),
                ("2026-03-03T00:00", "40"),
                ("2026-03-04T00:00", "80"),
                ("2026-03-04T12:00", "120"),
            ],
            "100.00",
        ),
    ],
)
def test_overdraft_limit(
    name: str, readings: list[tuple[str, str]], limit: str, tmp_path: Path
) -> None:
    result = replay(
        tmp_path, accounts=[open_account(f"{MON}T00:00", "1000.00")], readings=_daily(readings)
    )
    assert result.final()["overdraft_limit"] == D(limit), name


def test_overdraft_limit_uses_the_last_30_days(tmp_path: Path) -> None:
    # Mar 2 charge 60, then Mar 3 … Apr 1 charge 10 each (30 days; Apr 1 closed at the end).
    # Last 30 charges are all 10: 3 × 10 = 30.00 (all 31 would give 3 × 360 / 31 = 34.84).
    readings = [reading(f"{MON}T00:00", "0")]
    day, energy = date(2026, 3, 3), 60
    while day <= date(2026, 4, 1):
        readings.append(reading(f"{day.isoformat()}T00:00", str(energy)))
        day, energy = day + timedelta(days=1), energy + 10
    readings.append(reading("2026-04-01T12:00", str(energy)))
    result = replay(tmp_path, accounts=[open_account(f"{MON}T00:00", "1000.00")], readings=readings)
    charges = [r["charge"] for r in result.rows("daily_usage")]
    assert charges == [D(60)] + [D(10)] * 30
    assert result.final()["overdraft_limit"] == D("30.00")


# --- disconnection and reconnection (S5, S14.15, S14.16) -------------------------------------


def _cut_at(
    moment: str, rules: BillingRules, tmp_path: Path, payments: Iterable[Any] = ()
) -> Replay:
    """A1 opened with 5.00 on the day of ``moment``, then 16 kWh by ``moment``; ``payments``."""
    day = moment[:10]
    return replay(
        tmp_path,
        rules=rules,
        accounts=[open_account(f"{day}T00:00", "5.00")],
        payments=payments,
        readings=[reading(f"{day}T00:00", "0.000"), reading(moment, "16.000")],
    )  # available 5 − 16 = −11 < −10.00


HOLIDAY = BillingRules(
    plans=RULES.plans, window=DisconnectWindow(holidays=frozenset({date(2026, 3, 9)}))
)


@pytest.mark.parametrize(
    ("moment", "rules", "scheduled_for"),
    [
        (f"{MON}T09:00", RULES, None),
        (f"{MON}T08:00", RULES, None),
        (f"{MON}T07:59:59", RULES, f"{MON}T08:00"),
        ("2026-03-06T16:59", RULES, None),  # Friday inside
        ("2026-03-06T17:00", RULES, "2026-03-09T08:00"),  # Friday 17:00 is outside
        ("2026-03-07T10:00", RULES, "2026-03-09T08:00"),  # Saturday
        ("2026-03-09T10:00", HOLIDAY, "2026-03-10T08:00"),  # a configured holiday
    ],
)
def test_disconnect_inside_the_window_or_scheduled(
    moment: str, rules: BillingRules, scheduled_for: str | None, tmp_path: Path
) -> None:
    result = _cut_at(moment, rules, tmp_path)
    if scheduled_for is None:
        [cut] = result.commands()
        assert (cut["action"], cut["meter_id"], cut["account_id"]) == ("disconnect", "M1", "A1")
        assert parse_ts(cut["ts"]) == at(moment)
        [note] = result.notes("disconnected")
        assert D(note["data"]["available"]) == D("-11.00")
        assert D(note["data"]["overdraft_limit"]) == D("10.00")
        assert result.notes("disconnect_scheduled") == []
        assert result.final()["status"] == "disconnected"
    else:
        assert result.commands() == []
        [note] = result.notes("disconnect_scheduled")
        assert parse_ts(note["data"]["scheduled_for"]) == at(scheduled_for)
        assert D(note["data"]["available"]) == D("-11.00")
        assert D(note["data"]["overdraft_limit"]) == D("10.00")
        assert result.final()["status"] == "arrears"


def test_not_below_minus_the_limit_is_no_cut(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "5.00")],
        readings=[reading(f"{MON}T00:00", "0"), reading(f"{MON}T09:00", "15.000")],
    )
    # available −10.00 is not < −10.00.
    assert result.commands() == [] and result.notes("disconnect_scheduled") == []


def test_scheduled_cut_happens_at_the_first_message_inside_the_window(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "5.00"),
            event("update", f"{MON}T08:30", phone="13800000000"),
        ],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T06:00", "16.000"),  # −11 at 06:00 → scheduled for 08:00
            reading(f"{MON}T07:00", "16.500"),
        ],  # −11.5, still pending: no second notice
    )
    [scheduled] = result.notes("disconnect_scheduled")
    assert parse_ts(scheduled["ts"]) == at(f"{MON}T06:00")
    assert parse_ts(scheduled["data"]["scheduled_for"]) == at(f"{MON}T08:00")
    # The update at 08:30 is the first applied message inside the window.
    [cut] = result.commands("disconnect")
    assert parse_ts(cut["ts"]) == at(f"{MON}T08:30")
    [note] = result.notes("disconnected")
    assert D(note["data"]["available"]) == D("-11.50")


def test_pending_cut_cancelled_silently_by_a_credit_leaving_available_positive(
    tmp_path: Path,
) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "5.00")],
        payments=[topup("P1", "20.00", f"{MON}T07:00")],  # −11 + 20 = 9 > 0
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T06:00", "16.000"),
            reading(f"{MON}T08:30", "16.000"),  # inside the window: nothing to cut
            reading(f"{MON}T18:00", "36.000"),
        ],  # 9 − 20 = −11 again → new notice
    )
    assert result.commands() == []
    assert result.notes("disconnected") == [] and result.notes("reconnected") == []
    scheduled = result.notes("disconnect_scheduled")
    assert times(scheduled) == [at(f"{MON}T06:00"), at(f"{MON}T18:00")]
    assert parse_ts(scheduled[1]["data"]["scheduled_for"]) == at("2026-03-03T08:00")


def test_pending_cut_dropped_inside_the_window_when_no_longer_below_the_limit(
    tmp_path: Path,
) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "5.00")],
        payments=[topup("P1", "5.00", f"{MON}T07:00")],  # −11 + 5 = −6: still pending
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T06:00", "16.000"),
            reading(f"{MON}T08:30", "16.000"),  # inside, −6 ≥ −10: dropped, no cut
            reading(f"{MON}T09:00", "21.000"),
        ],  # −11 inside the window → cut now
    )
    [cut] = result.commands()
    assert parse_ts(cut["ts"]) == at(f"{MON}T09:00")
    assert len(result.notes("disconnect_scheduled")) == 1


def test_reconnection_needs_available_above_zero(tmp_path: Path) -> None:
    payments = [
        topup("P1", "10.00", f"{MON}T10:00"),  # −1: stays disconnected
        topup("P2", "1.00", f"{MON}T11:00"),  # 0.00: not > 0, stays disconnected
        topup("P3", "0.01", f"{MON}T12:00"),  # 0.01 > 0 → reconnect
    ]
    result = _cut_at(f"{MON}T09:00", RULES, tmp_path, payments)
    assert actions(result) == [
        ("disconnect", at(f"{MON}T09:00")),
        ("reconnect", at(f"{MON}T12:00")),
    ]
    [note] = result.notes("reconnected")
    assert parse_ts(note["ts"]) == at(f"{MON}T12:00")
    assert D(note["data"]["available"]) == D("0.01")
    # 5 + 11.01 − 16 = 0.01 at the end of the day.
    assert result.final()["status"] == "active"


def test_reconnection_outside_the_window(tmp_path: Path) -> None:
    # No window applies to reconnection: a Saturday-night top-up reconnects at once.
    result = _cut_at(f"{MON}T09:00", RULES, tmp_path, [topup("P1", "50.00", "2026-03-07T23:00")])
    assert actions(result) == [
        ("disconnect", at(f"{MON}T09:00")),
        ("reconnect", at("2026-03-07T23:00")),
    ]


def test_redemption_is_a_credit_that_reconnects(tmp_path: Path) -> None:
    # Plan "dear" (100.00 yuan/kWh) so that points can outweigh the overdraft.
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "0.00", plan="dear")],
        payments=[
            topup("P1", "2000.00", f"{MON}T00:10"),  # 2000 basic points
            redeem("R1", 2000, f"{MON}T10:00"),
        ],  # +20.00: −11 + 20 = 9 > 0
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T09:00", "20.110"),
        ],  # 20.11 × 100 = 2011 → −11 → cut
    )
    assert actions(result) == [
        ("disconnect", at(f"{MON}T09:00")),
        ("reconnect", at(f"{MON}T10:00")),
    ]
    [note] = result.notes("reconnected")
    assert D(note["data"]["available"]) == D("9.00")


def test_negative_opening_balance_is_checked_for_a_cut_after_open(tmp_path: Path) -> None:
    # S14.12: the disconnection check runs after every applied message, open included.
    result = replay(tmp_path, accounts=[open_account(f"{MON}T09:00", "-20.00")])
    [cut] = result.commands()
    assert (cut["action"], parse_ts(cut["ts"])) == ("disconnect", at(f"{MON}T09:00"))
    assert result.notes("low_balance") == [] and result.notes("arrears") == []


def test_consumption_while_disconnected_once_per_period(tmp_path: Path) -> None:
    # No relay results in the input: a cut is confirmed 30 minutes after its command (S14.16).
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "5.00")],
        payments=[topup("P1", "30.00", f"{MON}T13:00")],  # 35 − 17.82 = 17.18 > 0 → reconnect
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading(f"{MON}T09:00", "16.000"),  # cut (−11), confirmed at 09:30
            reading(f"{MON}T09:15", "16.300"),  # starts 09:00, before confirmation: no notice
            reading(f"{MON}T10:00", "16.310"),  # starts 09:15, before confirmation: no notice
            reading(f"{MON}T11:00", "16.320"),  # Δ 0.010, not > 0.01: no notice
            reading(f"{MON}T12:00", "16.820"),  # Δ 0.500 → notice
            reading(f"{MON}T12:30", "17.820"),  # Δ 1.000, same period: no notice
            reading(f"{MON}T14:00", "45.010"),  # 35 − 45.01 = −10.01 < −10 → cut again
            reading(f"{MON}T15:00", "45.100"),  # starts 14:00, before 14:30: no notice
            reading(f"{MON}T16:00", "45.200"),  # Δ 0.100 → notice (new period)
        ],
    )
    notices = result.notes("consumption_while_disconnected")
    assert times(notices) == [at(f"{MON}T12:00"), at(f"{MON}T16:00")]
    assert [(n["data"]["meter_id"], D(n["data"]["kwh"])) for n in notices] == [
        ("M1", D("0.500")),
        ("M1", D("0.100")),
    ]
    assert [c["action"] for c in result.commands()] == ["disconnect", "reconnect", "disconnect"]
    # Consumption while disconnected is billed: 45.200 kWh → 45.20; 35 − 45.20 = −10.20.
    [day] = result.rows("daily_usage")
    assert (day["kwh"], day["charge"], day["closing_balance"]) == (
        D("45.200"),
        D("45.20"),
        D("-10.20"),
    )


# --- auto top-up (S5, S14.14) -----------------------------------------------------------------


def test_auto_topup_is_level_triggered_with_retry_and_cleared_by_its_request_id(
    tmp_path: Path,
) -> None:
    accounts = [open_account(f"{MON}T00:00", "30.00", auto_topup_amount="50.00")]
    readings = [
        reading(f"{MON}T00:00", "0.000"),
        reading(f"{MON}T01:00", "11.000"),  # 19 < 20 → request 1
        reading(f"{MON}T02:00", "12.000"),  # 18, request 1 outstanding (< 24 h): none
        reading("2026-03-03T03:00", "13.000"),  # 17, request 1 is 26 h old → request 2
    ]
    first = replay(tmp_path, accounts=accounts, readings=readings)
    requests = first.messages("payment-requests")
    assert times(requests) == [at(f"{MON}T01:00"), at("2026-03-03T03:00")]
    for request in requests:
        assert (request["account_id"], D(request["amount"]), request["channel"]) == (
            "A1",
            D("50.00"),
            "bank",
        )
    second_id = requests[1]["request_id"]
    assert requests[0]["request_id"] != second_id

    payments = [
        # A top-up with another request id does not clear request 2: 17 + 50 = 67.
        topup("P1", "50.00", "2026-03-03T04:00", "bank", request_id="someone-else"),
        # 10:00 reading: 67 − 48 = 19 < 20, but request 2 (03:00) is outstanding: none.
        # This one carries request 2's id: cleared; 19 + 1 = 20, not below: none.
        topup("P2", "1.00", "2026-03-03T11:00", "bank", request_id=second_id),
        # 12:00 reading: 19 < 20 and nothing outstanding → request 3 at once.
    ]
    readings += [reading("2026-03-03T10:00", "61.000"), reading("2026-03-03T12:00", "62.000")]
    result = replay(tmp_path, accounts=accounts, payments=payments, readings=readings)
    requests = result.messages("payment-requests")
    assert times(requests) == [at(f"{MON}T01:00"), at("2026-03-03T03:00"), at("2026-03-03T12:00")]
    assert requests[1]["request_id"] == second_id  # ids are deterministic
    assert len({r["request_id"] for r in requests}) == 3


def test_auto_topup_off_by_update_null(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "30.00", auto_topup_amount="50.00"),
            event("update", f"{MON}T00:30", auto_topup_amount=None),
        ],
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T01:00", "11.000")],
    )
    assert result.messages("payment-requests") == []
    assert len(result.notes("low_balance")) == 1


# --- top-ups, rebates and basic points (S6, S14.18) -------------------------------------------


def test_topup_rebate_once_per_account_per_month_on_app_alipay_wechat(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "0.00")],
        payments=[
            topup("P1", "500.00", f"{MON}T10:00", "app"),  # rebate 30.00 (March)
            topup("P2", "600.00", "2026-03-20T10:00", "alipay"),  # March already used
            {
                **topup("P3", "500.00", MON + "T00:00", "wechat"),
                "ts": "2026-03-31T16:30:00Z",
            },  # = Apr 1 00:30 local → April: rebate
            topup("P4", "499.99", "2026-05-01T09:00", "app"),  # below 500: none
            topup("P5", "1000.00", "2026-05-01T10:00", "bank"),  # channel: none
            topup("P6", "1000.00", "2026-05-02T10:00", "counter"),  # channel: none
            topup("P7", "500.00", "2026-05-03T10:00", "wechat"),  # first qualifying in May
        ],
    )
    rebates = result.rows("ledger", kind="rebate")
    assert [(r["ref"], r["amount"], r["ts"]) for r in rebates] == [
        ("P1", D("30.00"), at(f"{MON}T10:00")),
        ("P3", D("30.00"), at("2026-04-01T00:30")),
        ("P7", D("30.00"), at("2026-05-03T10:00")),
    ]
    # The rebate follows its top-up in the ledger.
    assert ledger(result)[:3] == [
        ("topup", D("500.00"), D("500.00"), "P1"),
        ("rebate", D("30.00"), D("530.00"), "P1"),
        ("topup", D("600.00"), D("1130.00"), "P2"),
    ]
    # Rebates earn no points: P1 earns floor(500.00) = 500, not 530.
    assert points(result)[0] == ("basic", 500, 500)
    received = result.notes("topup_received")
    first = received[0]["data"]
    assert (
        first["payment_id"],
        D(first["amount"]),
        first["channel"],
        D(first["rebate"]),
        first["points"],
        D(first["balance"]),
        D(first["available"]),
    ) == ("P1", D("500.00"), "app", D("30.00"), 500, D("530.00"), D("530.00"))
    assert [D(r["data"]["rebate"]) for r in received] == [
        D(30),
        D(0),
        D(30),
        D(0),
        D(0),
        D(0),
        D(30),
    ]


def test_configured_campaigns_inclusive_dates_each_matching_one_applies(tmp_path: Path) -> None:
    spring = RebateCampaign(
        "spring", frozenset({"app"}), D("100.00"), D("5.00"), 2, date(2026, 3, 2), date(2026, 3, 4)
    )
    anyone = RebateCampaign("any", frozenset({"app", "bank"}), D("200.00"), D("8.00"), 1)
    rules = BillingRules(plans=RULES.plans, campaigns=(spring, anyone))
    result = replay(
        tmp_path,
        rules=rules,
        accounts=[open_account("2026-03-01T00:00", "0.00")],
        payments=[
            topup("P1", "100.00", "2026-03-01T23:59", "app"),  # before spring: none
            topup("P2", "100.00", f"{MON}T00:00", "app"),  # spring (from is inclusive): 5
            topup("P3", "200.00", "2026-03-03T10:00", "app"),  # spring 5 (2nd) + any 8
            topup("P4", "100.00", "2026-03-04T12:00", "app"),  # spring used twice: none
            topup("P5", "250.00", "2026-03-04T23:59", "bank"),  # any used this month: none
            topup("P6", "150.00", "2026-04-01T10:00", "app"),  # after spring's end: none
        ],
    )
    rebates = sorted((r["ref"], r["amount"]) for r in result.rows("ledger", kind="rebate"))
    assert rebates == [("P2", D("5.00")), ("P3", D("5.00")), ("P3", D("8.00"))]
    assert [D(n["data"]["rebate"]) for n in result.notes("topup_received")] == [
        D(0),
        D(5),
        D(13),
        D(0),
        D(0),
        D(0),
    ]


def test_basic_points_floor_of_the_amount_when_available_not_negative(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "0.00")],
        payments=[
            topup("P1", "10.99", f"{MON}T01:00"),  # available 0.00 ≥ 0 → 10 points
            topup("P2", "100.00", f"{MON}T03:00"),  # available −9.01 < 0 → none
            topup("P3", "50.00", f"{MON}T04:00"),
        ],  # available 90.99 ≥ 0 → 50 points
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T02:00", "20.000")],
    )
    # (then the end of input closes Mar 2: 160.99 − 20.00 = 140.99 → 1 daily point)
    assert points(result) == [("basic", 10, 10), ("basic", 50, 60), ("daily", 1, 61)]
    assert [r["data"]["points"] for r in result.notes("topup_received")] == [10, 0, 50]


# --- daily points, redemption, expiry (S6, S14.18) --------------------------------------------


def test_daily_points_from_the_balance_after_the_charge(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "350.00")],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading("2026-03-03T00:00", "49.990"),  # 350 − 49.99 = 300.01 → 3
            reading("2026-03-04T00:00", "50.000"),  # 300.01 − 0.01 = 300.00 → 3
            reading("2026-03-05T00:00", "50.010"),
        ],  # 299.99 → 2
        # end of input closes Mar 5 with 0.00: 299.99 → 2
    )
    assert points(result) == [("daily", 3, 3), ("daily", 3, 6), ("daily", 2, 8), ("daily", 2, 10)]
    assert [r["ts"] for r in result.rows("points_ledger")] == [
        at("2026-03-03T00:00"),
        at("2026-03-04T00:00"),
        at("2026-03-05T00:00"),
        at("2026-03-06T00:00"),
    ]


def test_no_daily_points_below_100_or_at_a_negative_balance(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "100.00"),
            open_account(f"{MON}T00:00", "5.00", account_id="A2", meter_id="M2"),
        ],
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            reading("2026-03-03T00:00", "0.010"),
            reading(f"{MON}T00:00", "0.000", "M2"),
            reading(f"{MON}T09:00", "6.000", "M2"),
        ],
    )
    # A1: 100.00 − 0.01 = 99.99 → 0 points, and no entry for 0 points. A2: −1.00 → none.
    assert result.rows("points_ledger") == []


def test_redemption_posts_a_credit_and_takes_points(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "0.00")],
        payments=[topup("P1", "80.00", f"{MON}T01:00"), redeem("R1", 30, f"{MON}T02:00")],
    )
    # 30 points = 0.30 yuan.
    assert ledger(result)[:2] == [
        ("topup", D("80.00"), D("80.00"), "P1"),
        ("points_redemption", D("0.30"), D("80.30"), "R1"),
    ]
    assert points(result) == [("basic", 80, 80), ("redemption", -30, 50)]


def test_fifo_redemption_dec_1_notice_and_dec_31_expiry(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account("2025-12-01T00:00", "0.00")],
        payments=[
            topup("P1", "60.00", "2025-12-15T10:00"),  # 60 points, lot 2025
            topup("P2", "30.00", "2026-01-10T10:00"),  # 30 points, lot 2026
            redeem("R1", 40, "2026-02-01T10:00"),  # oldest first: lot 2025 → 20, lot 2026 → 30
            topup("P3", "20.00", "2026-12-31T10:00"),  # 20 points, lot 2026; balance 110.40
        ],
        readings=[
            # Closes every day up to Dec 30 2026 (balance 90.40 < 100: no daily points);
            # Dec 1 2026 closes with 20 points of 2025 left → points_expiring.
            reading("2026-12-31T00:30", "0.000"),
            # Closes Dec 31 2026: daily floor(110.40 / 100) = 1 point first, then lot 2025
            # (20) expires.
            reading("2027-01-01T00:30", "0.000"),
        ],
        # End of input closes Jan 1 2027: 1 more daily point (lot 2027).
    )
    assert points(result) == [
        ("basic", 60, 60),
        ("basic", 30, 90),
        ("redemption", -40, 50),
        ("basic", 20, 70),
        ("daily", 1, 71),
        ("expiry", -20, 51),
        ("daily", 1, 52),
    ]
    expiry_rows = result.rows("points_ledger", kind="expiry")
    assert [r["ts"] for r in expiry_rows] == [at("2027-01-01T00:00")]
    [notice] = result.notes("points_expiring")
    assert notice["data"]["points"] == 20
    assert date.fromisoformat(notice["data"]["expires_on"]) == date(2026, 12, 31)
    assert parse_ts(notice["ts"]) == at("2026-12-02T00:00")
    assert result.final()["points"] == 52


def test_daily_points_belong_to_the_year_of_the_day(tmp_path: Path) -> None:
    # Daily points of Dec 31 2025, posted at Jan 1 2026 00:00, belong to 2025 and so are
    # announced on Dec 1 2026 and expire when Dec 31 2026 closes.
    result = replay(
        tmp_path,
        accounts=[open_account("2025-12-31T00:00", "250.00")],
        readings=[
            reading("2026-01-01T00:30", "0"),  # Dec 31 2025 closes: 2 points (2025)
            reading("2026-12-30T00:30", "200.000"),  # 200 kWh over the year: 50.00 left
            reading("2027-01-01T00:30", "200.000"),
        ],
    )
    [notice] = result.notes("points_expiring")
    assert notice["data"]["points"] == 2
    expiry = result.rows("points_ledger", kind="expiry")
    assert [(r["points"], r["ts"]) for r in expiry] == [(-2, at("2027-01-01T00:00"))]


# --- close, replacement, end of input (S5, S14.8–S14.10) --------------------------------------


def test_move_out_close_rates_final_reading_redeems_points_and_refunds(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "100.00"),
            event("close", "2026-03-03T18:00", final_kwh="42.000"),
        ],
        payments=[
            topup("P1", "50.00", f"{MON}T01:00"),  # 50 basic points; balance 150
            topup("P2", "10.00", "2026-03-03T19:00"),
        ],  # after close: account_closed
        readings=[
            reading(f"{MON}T00:00", "0.000"),
            # 00:00 → 06:00 next day (30 h), Δ 30; midnight cum = 30000 × 24/30 = 24000:
            # Mar 2 24.000 kWh → charge 24.00, balance 126.00 → 1 daily point (51).
            reading("2026-03-03T06:00", "30.000"),
            reading("2026-03-03T19:00", "43.000"),  # after close: unknown_meter
        ],
    )
    # Close: final 42.000 rated over [06:00, 18:00) = 12 kWh; Mar 3 = 6 + 12 = 18 kWh,
    # charge 18.00 at 18:00 → 108.00 → 1 daily point (52); redeem 52 points → 0.52 → 108.52;
    # refund 108.52 → 0.00.
    assert ledger(result) == [
        ("topup", D("50.00"), D("150.00"), "P1"),
        ("charge", D("-24.00"), D("126.00"), "2026-03-02"),
        ("charge", D("-18.00"), D("108.00"), "2026-03-03"),
        ("points_redemption", D("0.52"), D("108.52"), "close"),
        ("refund", D("-108.52"), D("0.00"), "close"),
    ]
    close_ts = at("2026-03-03T18:00")
    assert [r["ts"] for r in result.rows("ledger")][2:] == [close_ts] * 3
    assert points(result) == [
        ("basic", 50, 50),
        ("daily", 1, 51),
        ("daily", 1, 52),
        ("redemption", -52, 0),
    ]
    days = result.rows("daily_usage")
    assert [(r["day"], r["kwh"], r["charge"], r["closing_balance"]) for r in days] == [
        (date(2026, 3, 2), D("24.000"), D("24.00"), D("126.00")),
        (date(2026, 3, 3), D("18.000"), D("18.00"), D("108.00")),
    ]
    [closed] = result.notes("account_closed")
    assert closed["data"] == {"refund": "108.52"}
    assert parse_ts(closed["ts"]) == close_ts
    final = result.final()
    assert (final["status"], final["balance"], final["points"]) == ("closed", D("0.00"), 0)
    assert sorted(r["reason"] for r in result.rows("rejected")) == [
        "account_closed",
        "unknown_meter",
    ]


def test_close_with_money_owed(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "5.00"),
            event("close", f"{MON}T20:00", final_kwh="3.000"),
        ],  # lower: ignored
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T10:00", "10.000")],
    )
    # Mar 2 charge 10.00 at 20:00: 5 − 10 = −5.00 owed; no refund, no alert or cut by close.
    assert ledger(result) == [("charge", D("-10.00"), D("-5.00"), "2026-03-02")]
    [closed] = result.notes("account_closed")
    assert closed["data"] == {"owed": "5.00"}
    assert result.final()["status"] == "closed"


def test_close_drops_a_pending_cut(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T00:00", "5.00"), event("close", f"{MON}T07:00")],
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T06:00", "16.000")],
    )
    assert len(result.notes("disconnect_scheduled")) == 1
    assert result.commands() == []
    assert result.notes("account_closed")[0]["data"] == {"owed": "11.00"}


def test_close_of_a_disconnected_account_does_not_reconnect(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "0.00", plan="dear"),
            event("close", f"{MON}T10:00"),
        ],
        payments=[topup("P1", "2000.00", f"{MON}T00:10")],  # 2000 basic points
        readings=[reading(f"{MON}T00:00", "0.000"), reading(f"{MON}T09:00", "20.110")],  # −11 → cut
    )
    # Close: charge 2011.00 → −11.00; 2000 points → +20.00 → 9.00; refund 9.00.
    assert [c["action"] for c in result.commands()] == ["disconnect"]
    assert result.notes("reconnected") == []
    assert result.notes("account_closed")[0]["data"] == {"refund": "9.00"}
    assert ledger(result)[-2:] == [
        ("points_redemption", D("20.00"), D("9.00"), "close"),
        ("refund", D("-9.00"), D("0.00"), "close"),
    ]


def test_meter_replacement(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "100.00"),
            replace_meter("A1", "2026-03-03T10:00", "M1", "1008.000", "M2", "0.500"),
        ],
        readings=[
            reading(f"{MON}T00:00", "1000.000"),
            reading(f"{MON}T06:00", "1005.000"),  # 5 kWh on Mar 2
            reading("2026-03-03T12:00", "2.500", "M2"),  # 2 kWh from the new 0.500 baseline
            reading("2026-03-03T13:00", "1009.000", "M1"),  # old meter: unknown_meter
        ],
    )
    # Old final 1008: 3 kWh over [Mar 2 06:00, Mar 3 10:00) (28 h): midnight cum =
    # 3000 × 18/28 = 1928.57 → 1929 → Mar 2 5 + 1.929 = 6.929; Mar 3 1.071 + 2 = 3.071.
    # No charge for the jump 1008 → 0.5.
    days = result.rows("daily_usage")
    assert [(r["day"], r["kwh"], r["charge"]) for r in days] == [
        (date(2026, 3, 2), D("6.929"), D("6.93")),
        (date(2026, 3, 3), D("3.071"), D("3.07")),
    ]
    # Mar 2 is closed by the replacement itself (it closes the days before its ts).
    assert result.positions("daily_usage", day=date(2026, 3, 2)) == ["accounts:2"]
    assert [r["meter_id"] for r in result.rows("intervals")][-1] == "M2"
    assert [r["reason"] for r in result.rows("rejected")] == ["unknown_meter"]
    assert result.final()["meter_id"] == "M2"


def test_final_readings_skip_the_jump_check(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "1000.00"),
            event("close", f"{MON}T01:00", final_kwh="500.000"),
        ],  # 500 kW mean
        readings=[reading(f"{MON}T00:00", "0.000")],
    )
    [day] = result.rows("daily_usage")
    assert (day["kwh"], day["charge"]) == (D("500.000"), D("500.00"))
    # 1000 − 500 = 500.00 → 5 daily points → +0.05 at close → refund 500.05.
    assert result.notes("account_closed")[0]["data"] == {"refund": "500.05"}
    assert result.rows("rejected") == []


def test_replacement_final_reading_is_checked_for_alerts(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "30.00"),
            replace_meter("A1", f"{MON}T01:00", "M1", "15.000", "M2", "0.000"),
        ],
        readings=[reading(f"{MON}T00:00", "0.000")],
    )
    [low] = result.notes("low_balance")  # 30 − 15 = 15 < 20
    assert parse_ts(low["ts"]) == at(f"{MON}T01:00")
    assert D(low["data"]["available"]) == D("15.00")


def test_days_between_open_and_the_baseline_close_with_zero(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account(f"{MON}T10:00", "50.00")],
        readings=[
            reading("2026-03-04T09:00", "700.000"),  # baseline, not charged
            reading("2026-03-04T10:00", "701.000"),
        ],
    )
    assert [(r["day"], r["kwh"], r["charge"]) for r in result.rows("daily_usage")] == [
        (date(2026, 3, 2), D(0), D(0)),
        (date(2026, 3, 3), D(0), D(0)),
        (date(2026, 3, 4), D(1), D(1)),
    ]
    # The opening balance is not a ledger entry; every closed day posts a charge, also 0.00.
    assert ledger(result) == [
        ("charge", D(0), D("50.00"), "2026-03-02"),
        ("charge", D(0), D("50.00"), "2026-03-03"),
        ("charge", D("-1.00"), D("49.00"), "2026-03-04"),
    ]


def test_end_of_input_closes_the_open_day_only(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[
            open_account(f"{MON}T00:00", "50.00"),
            open_account("2026-03-05T12:00", "1.00", account_id="A2", meter_id="M2"),
        ],
        readings=[reading(f"{MON}T00:00", "0.000"), reading("2026-03-03T10:00", "5.000")],
    )
    # A1: 00:00 → 10:00 next day (34 h), Δ 5: midnight cum = 5000 × 24/34 = 3529.41 → 3529.
    # Mar 2 3.529 → 3.53 (closed by the reading); Mar 3 1.471 → 1.47 (closed at the end,
    # ts Mar 4 00:00). A2 has no reading: the day of its open closes with 0.
    assert [
        (r["account_id"], r["day"], r["kwh"], r["charge"]) for r in result.rows("daily_usage")
    ] == [
        ("A1", date(2026, 3, 2), D("3.529"), D("3.53")),
        ("A1", date(2026, 3, 3), D("1.471"), D("1.47")),
        ("A2", date(2026, 3, 5), D(0), D(0)),
    ]
    end = [(r["account_id"], r["ts"]) for r in result.rows_caused_by(None, "ledger")]
    assert end == [("A1", at("2026-03-04T00:00")), ("A2", at("2026-03-06T00:00"))]
    # Nothing but the close at the end: no notifications, commands or requests.
    assert [o for o in result.caused_by(None) if isinstance(o, TopicMessage)] == []
