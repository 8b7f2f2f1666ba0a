"""Bad input (SPEC S9, S14.2–S14.5): one reason per rejected input, on `rejected` and the DLQ.

Each rejected input must appear exactly once in the `rejected` table and once on the DLQ with
its original text, and cause nothing else (a `meter_anomaly` is the only companion allowed,
for `implausible_jump` and `meter_regression`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.outputs import Row, TopicMessage
from tests.billing_harness import (
    Replay,
    at,
    event,
    open_account,
    reading,
    redeem,
    replace_meter,
    replay,
    topup,
    ts,
)

D = Decimal


# --- the rejection contract -------------------------------------------------------------------


def assert_rejected(result: Replay, position: str, reason: str, *, anomaly: bool = False) -> None:
    """The input at ``position`` is rejected once, with ``reason``, and caused nothing else."""
    raw = result.raw(position)
    topic = position.split(":")[0]
    caused = result.caused_by(position)
    rejected = [o for o in caused if isinstance(o, Row) and o.table == "rejected"]
    dlq = [o for o in caused if isinstance(o, TopicMessage) and o.topic == "dlq"]
    assert [r.values["reason"] for r in rejected] == [reason], caused
    assert len(dlq) == 1 and dlq[0].value["reason"] == reason
    assert rejected[0].values["payload"] == raw == dlq[0].value["payload"]
    # The core names the input topic logically; the flow adds the configured prefix.
    assert rejected[0].values["topic"] == topic == dlq[0].value["topic"]
    # Exactly once in the whole run.
    assert sum(1 for r in result.rows("rejected") if r["payload"] == raw) == 1
    assert sum(1 for m in result.messages("dlq") if m["payload"] == raw) == 1
    others = [o for o in caused if o not in rejected and o not in dlq]
    if anomaly:
        kinds = sorted(
            (
                o.table if isinstance(o, Row) else o.topic,
                o.values["type"] if isinstance(o, Row) else o.value["type"],
            )
            for o in others
        )
        assert kinds == [("events", "meter_anomaly"), ("notifications", "meter_anomaly")]
    else:
        assert others == []


def assert_applied(result: Replay, position: str) -> None:
    caused = result.caused_by(position)
    assert not [o for o in caused if isinstance(o, Row) and o.table == "rejected"], caused
    assert caused, "an applied input leaves a trace"


BASE_ACCOUNTS = [
    open_account("A1", "M1", "zhejiang-tiered", "2026-03-02T00:00", opening_balance="100.00"),
    open_account("A2", "M2", "zhejiang-tou", "2026-03-02T00:00", opening_balance="50.00"),
]
BASE_READINGS = [
    reading("M1", "2026-03-02T00:00", "100.000"),
    reading("M1", "2026-03-02T01:00", "101.000"),
]


def with_bad(tmp_path: Path, topic: str, bad: Any, **lists: list[Any]) -> tuple[Replay, str]:
    """Run the base scenario with ``bad`` appended to ``topic``'s file; return its position."""
    files = {
        "accounts": list(lists.get("accounts", BASE_ACCOUNTS)),
        "payments": list(lists.get("payments", [])),
        "readings": list(lists.get("readings", BASE_READINGS)),
    }
    files[topic].append(bad)
    result = replay(tmp_path, **files)
    return result, f"{topic}:{len(files[topic])}"


def on_base(
    tmp_path: Path, *events: Any, payments: Iterable[Any] = (), readings: Iterable[Any] = ()
) -> Replay:
    """Run the base accounts then ``events``, ``payments``, the base readings then ``readings``."""
    return replay(
        tmp_path,
        accounts=[*BASE_ACCOUNTS, *events],
        payments=payments,
        readings=[*BASE_READINGS, *readings],
    )


def with_payments(tmp_path: Path, *payments: Any) -> Replay:
    """Run the base accounts and ``payments``, without readings."""
    return replay(tmp_path, accounts=BASE_ACCOUNTS, payments=payments)


# --- malformed (S9, S14.2) --------------------------------------------------------------------

T2 = ts("2026-03-02T02:00")

MALFORMED = {
    # readings
    "reading-not-json": (
        "readings",
        '{"meter_id": "M1", "ts": "' + T2 + '", "energy_kwh": "102.0"',
    ),
    "reading-not-an-object": ("readings", f'["M1", "{T2}", "102.000"]'),
    "reading-empty-object": ("readings", "{}"),
    "reading-missing-meter": ("readings", {"ts": T2, "energy_kwh": "102.000"}),
    "reading-meter-not-text": ("readings", {"meter_id": 1, "ts": T2, "energy_kwh": "102.000"}),
    "reading-missing-energy": ("readings", {"meter_id": "M1", "ts": T2}),
    "reading-missing-ts": ("readings", {"meter_id": "M1", "energy_kwh": "102.000"}),
    "energy-json-number": ("readings", f'{{"meter_id": "M1", "ts": "{T2}", "energy_kwh": 102.5}}'),
    "energy-json-integer": ("readings", f'{{"meter_id": "M1", "ts": "{T2}", "energy_kwh": 102}}'),
    "energy-exponent-text": ("readings", reading("M1", "2026-03-02T02:00", "1.02e2")),
    "energy-exponent-number": (
        "readings",
        f'{{"meter_id": "M1", "ts": "{T2}", "energy_kwh": 1.02e2}}',
    ),
    "energy-nan-literal": ("readings", f'{{"meter_id": "M1", "ts": "{T2}", "energy_kwh": NaN}}'),
    "energy-nan-text": ("readings", reading("M1", "2026-03-02T02:00", "NaN")),
    "energy-infinity-literal": (
        "readings",
        f'{{"meter_id": "M1", "ts": "{T2}", "energy_kwh": Infinity}}',
    ),
    "energy-infinity-text": ("readings", reading("M1", "2026-03-02T02:00", "Infinity")),
    "energy-negative": ("readings", reading("M1", "2026-03-02T02:00", "-1.000")),
    "energy-4-decimals": ("readings", reading("M1", "2026-03-02T02:00", "102.0001")),
    "energy-plus-sign": ("readings", reading("M1", "2026-03-02T02:00", "+102.000")),
    "energy-trailing-dot": ("readings", reading("M1", "2026-03-02T02:00", "102.")),
    "energy-empty": ("readings", reading("M1", "2026-03-02T02:00", "")),
    "ts-without-offset": (
        "readings",
        {"meter_id": "M1", "ts": "2026-03-02T02:00:00", "energy_kwh": "102.000"},
    ),
    "ts-date-only": ("readings", {"meter_id": "M1", "ts": "2026-03-02", "energy_kwh": "102.000"}),
    "ts-not-a-time": ("readings", {"meter_id": "M1", "ts": "yesterday", "energy_kwh": "102.000"}),
    "ts-json-number": ("readings", {"meter_id": "M1", "ts": 1772388000, "energy_kwh": "102.000"}),
    "ts-impossible-date": (
        "readings",
        {"meter_id": "M1", "ts": "2026-02-30T02:00:00+08:00", "energy_kwh": "102.000"},
    ),
    # payments
    "amount-json-number": (
        "payments",
        '{"type": "topup", "payment_id": "P1", "account_id": "A1",'
        f' "amount": 50.0, "channel": "app", "ts": "{T2}"}}',
    ),
    "amount-json-integer": (
        "payments",
        '{"type": "topup", "payment_id": "P1", "account_id": "A1",'
        f' "amount": 50, "channel": "app", "ts": "{T2}"}}',
    ),
    "amount-exponent": ("payments", topup("P1", "A1", "5e1", "2026-03-02T02:00")),
    "amount-nan": ("payments", topup("P1", "A1", "NaN", "2026-03-02T02:00")),
    "unknown-channel": ("payments", topup("P1", "A1", "50.00", "2026-03-02T02:00", "paypal")),
    "missing-channel": (
        "payments",
        {"type": "topup", "payment_id": "P1", "account_id": "A1", "amount": "50.00", "ts": T2},
    ),
    "missing-payment-id": (
        "payments",
        {"type": "topup", "account_id": "A1", "amount": "50.00", "channel": "app", "ts": T2},
    ),
    "payment-missing-account": (
        "payments",
        {"type": "topup", "payment_id": "P1", "amount": "50.00", "channel": "app", "ts": T2},
    ),
    "unknown-payment-type": (
        "payments",
        {"type": "refund", "payment_id": "P1", "account_id": "A1", "amount": "50.00", "ts": T2},
    ),
    "points-as-string": ("payments", redeem("R1", "A1", "300", "2026-03-02T02:00")),
    "points-json-float": (
        "payments",
        '{"type": "redeem", "payment_id": "R1", "account_id": "A1",'
        f' "points": 300.0, "ts": "{T2}"}}',
    ),
    "points-boolean": ("payments", redeem("R1", "A1", True, "2026-03-02T02:00")),
    "points-missing": (
        "payments",
        {"type": "redeem", "payment_id": "R1", "account_id": "A1", "ts": T2},
    ),
    "payment-ts-without-offset": (
        "payments",
        {
            "type": "topup",
            "payment_id": "P1",
            "account_id": "A1",
            "amount": "50.00",
            "channel": "app",
            "ts": "2026-03-02T02:00:00",
        },
    ),
    # account events
    "unknown-plan": ("accounts", open_account("A3", "M3", "beijing-tiered", "2026-03-02T02:00")),
    "open-missing-meter": (
        "accounts",
        {"type": "open", "account_id": "A3", "plan": "zhejiang-tiered", "ts": T2},
    ),
    "open-missing-plan": (
        "accounts",
        {"type": "open", "account_id": "A3", "meter_id": "M3", "ts": T2},
    ),
    "opening-balance-3-decimals": (
        "accounts",
        open_account("A3", "M3", "zhejiang-tiered", "2026-03-02T02:00", opening_balance="10.001"),
    ),
    "opening-balance-json-number": (
        "accounts",
        '{"type": "open", "account_id": "A3", '
        '"meter_id": "M3", "plan": "zhejiang-tiered", '
        f'"ts": "{T2}", "opening_balance": 10.5}}',
    ),
    "ytd-negative": (
        "accounts",
        open_account("A3", "M3", "zhejiang-tiered", "2026-03-02T02:00", ytd_kwh="-1"),
    ),
    "ytd-4-decimals": (
        "accounts",
        open_account("A3", "M3", "zhejiang-tiered", "2026-03-02T02:00", ytd_kwh="1.0001"),
    ),
    "change-plan-unknown-plan": (
        "accounts",
        event("change_plan", "A1", "2026-03-02T02:00", plan="flat-rate"),
    ),
    "unknown-event-type": ("accounts", event("suspend", "A1", "2026-03-02T02:00")),
    "threshold-3-decimals": (
        "accounts",
        event("update", "A1", "2026-03-02T02:00", low_balance_threshold="20.001"),
    ),
    "auto-topup-3-decimals": (
        "accounts",
        event("update", "A1", "2026-03-02T02:00", auto_topup_amount="50.001"),
    ),
    "close-final-kwh-number": (
        "accounts",
        f'{{"type": "close", "account_id": "A1", "ts": "{T2}", "final_kwh": 101.5}}',
    ),
    "replace-missing-new-meter": (
        "accounts",
        event(
            "replace_meter",
            "A1",
            "2026-03-02T02:00",
            old_meter_id="M1",
            old_final_kwh="101.000",
            new_initial_kwh="0.000",
        ),
    ),
    "event-ts-without-offset": (
        "accounts",
        {"type": "update", "account_id": "A1", "ts": "2026-03-02T02:00:00", "phone": "138"},
    ),
    "update-email-not-text": (
        "accounts",
        {"type": "update", "account_id": "A1", "ts": "2026-03-02T02:00:00+08:00", "email": 7},
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed(case: str, tmp_path: Path) -> None:
    topic, bad = MALFORMED[case]
    result, position = with_bad(tmp_path, topic, bad)
    assert_rejected(result, position, "malformed")


@pytest.mark.parametrize(
    ("topic", "good"),
    [
        ("readings", {"meter_id": "M1", "ts": "2026-03-01T18:00:00Z", "energy_kwh": "102.000"}),
        ("readings", {"meter_id": "M1", "ts": "2026-03-01T18:00:00+00:00", "energy_kwh": "102"}),
        ("readings", reading("M1", "2026-03-02T02:00", "102.5")),
        ("payments", topup("P1", "A1", "500", "2026-03-02T02:00")),
        ("payments", topup("P1", "A1", "10000.00", "2026-03-02T02:00", "bank")),
        (
            "accounts",
            open_account(
                "A3", "M3", "zhejiang-tou", "2026-03-02T02:00", opening_balance="5.5", ytd_kwh="12"
            ),
        ),
        (
            "accounts",
            {
                "type": "update",
                "account_id": "A1",
                "ts": "2026-03-02T02:00:00+08:00",
                "email": "a1@example.cn",
            },
        ),
    ],
)
def test_well_formed_edge_values_are_applied(topic: str, good: Any, tmp_path: Path) -> None:
    # "Z" counts as an offset; decimals with fewer places are fine; 10000.00 is the maximum.
    result, position = with_bad(tmp_path, topic, good)
    assert_applied(result, position)


def test_reading_in_utc_is_placed_in_local_time(tmp_path: Path) -> None:
    result, position = with_bad(
        tmp_path,
        "readings",
        {"meter_id": "M1", "ts": "2026-03-01T18:00:00Z", "energy_kwh": "102.000"},
    )
    [row] = result.rows_caused_by(position, "readings")
    assert row["ts"] == at("2026-03-02T02:00")


# --- readings (S14.3) -------------------------------------------------------------------------


def test_unknown_meter_never_opened(tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "readings", reading("M9", "2026-03-02T02:00", "5.000"))
    assert_rejected(result, position, "unknown_meter")


def test_unknown_meter_before_its_account_opens(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=[open_account("A1", "M1", "zhejiang-tiered", "2026-03-02T12:00")],
        readings=[
            reading("M1", "2026-03-02T11:59", "100.000"),
            reading("M1", "2026-03-02T12:00", "100.000"),
        ],
    )
    assert_rejected(result, "readings:1", "unknown_meter")
    assert_applied(result, "readings:2")


def test_unknown_meter_after_close_and_known_again_under_a_new_account(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T03:00"),
        open_account("A3", "M1", "zhejiang-tiered", "2026-03-02T05:00"),
        readings=[
            reading("M1", "2026-03-02T04:00", "102.000"),
            reading("M1", "2026-03-02T06:00", "103.000"),
        ],
    )
    assert_rejected(result, "readings:3", "unknown_meter")
    assert_applied(result, "readings:4")
    assert result.rows("readings", ts=at("2026-03-02T06:00"))[0]["account_id"] == "A3"


def test_duplicate_reading(tmp_path: Path) -> None:
    # Energies compare numerically: "101.0" is the accepted "101.000".
    result, position = with_bad(tmp_path, "readings", reading("M1", "2026-03-02T01:00", "101.0"))
    assert_rejected(result, position, "duplicate")


def test_conflicting_reading(tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "readings", reading("M1", "2026-03-02T01:00", "101.500"))
    assert_rejected(result, position, "conflict")


def test_out_of_order_reading(tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "readings", reading("M1", "2026-03-02T00:30", "100.500"))
    assert_rejected(result, position, "out_of_order")


def test_implausible_jump_keeps_the_baseline_and_raises_an_anomaly(tmp_path: Path) -> None:
    # 01:00→01:15 with Δ 10.001 kWh is 40.004 kW > 40 kW.
    result = on_base(
        tmp_path,
        readings=[
            reading("M1", "2026-03-02T01:15", "111.001"),
            reading("M1", "2026-03-02T01:30", "102.000"),
        ],
    )
    assert_rejected(result, "readings:3", "implausible_jump", anomaly=True)
    [anomaly] = [m for m in result.messages("notifications") if m["type"] == "meter_anomaly"]
    assert anomaly["data"]["reason"] == "implausible_jump"
    assert D(anomaly["data"]["energy_kwh"]) == D("111.001")
    assert D(anomaly["data"]["previous_kwh"]) == D("101.000")
    # Baseline unchanged: the next reading is rated from 01:00 / 101.000.
    [interval] = result.rows_caused_by("readings:4", "intervals")
    assert (interval["start"], interval["kwh"]) == (at("2026-03-02T01:00"), D("1.000"))


def test_a_jump_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    # 10.000 kWh in 15 minutes is exactly 40 kW: only strictly above the limit is rejected.
    result, position = with_bad(tmp_path, "readings", reading("M1", "2026-03-02T01:15", "111.000"))
    assert_applied(result, position)


def test_meter_regression_rebases_without_charge(tmp_path: Path) -> None:
    # 101 → 90 in 15 min: a rollover would be 999 989 kWh in 15 min, far above 40 kW.
    result = on_base(
        tmp_path,
        readings=[
            reading("M1", "2026-03-02T01:15", "90.000"),
            reading("M1", "2026-03-02T01:30", "91.000"),
        ],
    )
    assert_rejected(result, "readings:3", "meter_regression", anomaly=True)
    [anomaly] = [m for m in result.messages("notifications") if m["type"] == "meter_anomaly"]
    assert anomaly["data"]["reason"] == "meter_regression"
    assert D(anomaly["data"]["previous_kwh"]) == D("101.000")
    # Rebased: the next reading is rated from 01:15 / 90.000.
    [interval] = result.rows_caused_by("readings:4", "intervals")
    assert (interval["start"], interval["end"], interval["kwh"]) == (
        at("2026-03-02T01:15"),
        at("2026-03-02T01:30"),
        D("1.000"),
    )
    # Mar 2: 1.000 (00:00→01:00) + 1.000 (01:15→01:30) = 2 × 0.538 = 1.076 → 1.08.
    [day] = result.rows("daily_usage", account_id="A1")
    assert (day["kwh"], day["charge"]) == (D("2.000"), D("1.08"))


def test_rollover_at_the_register_maximum_is_accepted_and_charged(tmp_path: Path) -> None:
    result = replay(
        tmp_path,
        accounts=BASE_ACCOUNTS,
        readings=[
            reading("M1", "2026-03-02T10:00", "999999.500"),
            reading("M1", "2026-03-02T10:15", "0.500"),
        ],
    )
    # 0.500 + 1 000 000 − 999 999.500 = 1.000 kWh in 15 min (4 kW) → 1 × 0.538 = 0.538 → 0.54.
    assert_applied(result, "readings:2")
    [interval] = result.rows("intervals", account_id="A1")
    assert (interval["kwh"], interval["cost"]) == (D("1.000"), D("0.538"))
    [day] = result.rows("daily_usage", account_id="A1")
    assert (day["kwh"], day["charge"], day["closing_balance"]) == (
        D("1.000"),
        D("0.54"),
        D("99.46"),
    )
    assert result.messages("notifications", type="meter_anomaly") == []


def _quarter_hours(count: int) -> list[dict]:
    """``count`` accepted readings of M1, every 15 minutes from Mar 2 00:00, 0.1 kWh apart."""
    start = at("2026-03-02T00:00")
    return [
        {
            "meter_id": "M1",
            "ts": (start + timedelta(minutes=15 * n)).isoformat(),
            "energy_kwh": f"{100 + n / 10:.3f}",
        }
        for n in range(count)
    ]


@pytest.mark.parametrize(("energy", "reason"), [("100.000", "duplicate"), ("100.500", "conflict")])
def test_duplicate_and_conflict_against_any_accepted_reading(
    energy: str, reason: str, tmp_path: Path
) -> None:
    # S14.3: duplicate / conflict are checked against any accepted reading of that meter at
    # that ts, before out_of_order. 2001 readings later, the very first one comes again.
    readings = _quarter_hours(2001)
    readings.append({**readings[0], "energy_kwh": energy})
    result = replay(tmp_path, accounts=BASE_ACCOUNTS, readings=readings)
    assert_rejected(result, "readings:2002", reason)


def test_duplicate_against_an_older_accepted_reading(tmp_path: Path) -> None:
    readings = _quarter_hours(50)
    readings.append(dict(readings[0]))
    result = replay(tmp_path, accounts=BASE_ACCOUNTS, readings=readings)
    assert_rejected(result, "readings:51", "duplicate")


def test_late_reading_of_a_replaced_meter_dated_before_the_replacement(tmp_path: Path) -> None:
    # A1 owned M1 until the replacement at 10:00, so at 09:00 an open account owned the meter:
    # not unknown_meter (S14.3). The old meter's series was closed by its final reading at
    # 10:00, so the 09:00 reading is older than the latest → out_of_order.
    result = on_base(
        tmp_path,
        replace_meter("A1", "2026-03-02T10:00", "M1", "105.000", "M7", "0.000"),
        readings=[
            reading("M7", "2026-03-02T11:00", "0.000"),
            reading("M1", "2026-03-02T09:00", "104.000"),  # arrives late
        ],
    )
    assert_rejected(result, "readings:4", "out_of_order")


def test_late_reading_dated_before_the_close(tmp_path: Path) -> None:
    # A1 owned M1 until its close at 10:00 (final 105.000 rated up to 10:00); a reading dated
    # 09:00 that arrives after the close was owned at its ts (not unknown_meter, S14.3) and is
    # older than the final reading → out_of_order.
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T10:00", final_kwh="105.000"),
        readings=[
            reading("M2", "2026-03-02T11:00", "0.000"),
            reading("M1", "2026-03-02T09:00", "104.000"),  # arrives late
        ],
    )
    assert_rejected(result, "readings:4", "out_of_order")


# --- payments (S6, S14.4) ---------------------------------------------------------------------


def test_duplicate_payment(tmp_path: Path) -> None:
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00"),
        topup("P1", "A1", "50.00", "2026-03-02T03:00"),
    )
    assert_applied(result, "payments:1")
    assert_rejected(result, "payments:2", "duplicate_payment")
    assert len(result.rows("ledger", kind="topup")) == 1


def test_payment_ids_are_one_namespace_for_topups_and_redemptions(tmp_path: Path) -> None:
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00", "counter"),
        redeem("P1", "A1", 10, "2026-03-02T03:00"),
    )
    assert_rejected(result, "payments:2", "duplicate_payment")


def test_a_redemption_refused_for_insufficient_points_does_not_claim_its_id(
    tmp_path: Path,
) -> None:
    # S14.4: "only an applied payment claims its id".
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00", "counter"),  # 50 points
        redeem("R1", "A1", 80, "2026-03-02T03:00"),
        redeem("R1", "A1", 40, "2026-03-02T04:00"),
    )
    assert_rejected(result, "payments:2", "insufficient_points")
    assert_applied(result, "payments:3")


def test_a_payment_refused_as_unknown_account_does_not_claim_its_id(tmp_path: Path) -> None:
    result = with_payments(
        tmp_path,
        topup("P1", "A9", "50.00", "2026-03-02T02:00"),
        topup("P1", "A1", "50.00", "2026-03-02T03:00"),
    )
    assert_rejected(result, "payments:1", "unknown_account")
    assert_applied(result, "payments:2")


def test_only_an_applied_payment_claims_its_id(tmp_path: Path) -> None:
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "0.00", "2026-03-02T02:00"),
        topup("P1", "A1", "5.00", "2026-03-02T03:00"),
    )
    assert_rejected(result, "payments:1", "invalid_amount")
    assert_applied(result, "payments:2")


def test_a_payment_id_used_by_another_account_is_a_duplicate(tmp_path: Path) -> None:
    # S6: idempotent by payment_id; S14.4 checks duplicate_payment before the account is even
    # looked up, so the id is global.
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00"),
        topup("P1", "A2", "50.00", "2026-03-02T03:00"),
    )
    assert_rejected(result, "payments:2", "duplicate_payment")


@pytest.mark.parametrize("amount", ["0.00", "0", "-5.00", "10.005", "10000.01", "20000"])
def test_invalid_topup_amount(amount: str, tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "payments", topup("P1", "A1", amount, "2026-03-02T02:00"))
    assert_rejected(result, position, "invalid_amount")


@pytest.mark.parametrize("points", [0, -5])
def test_redeem_of_less_than_one_point_is_an_invalid_amount(points: int, tmp_path: Path) -> None:
    bad = redeem("R1", "A1", points, "2026-03-02T02:00")
    result, position = with_bad(tmp_path, "payments", bad)
    assert_rejected(result, position, "invalid_amount")


def test_insufficient_points(tmp_path: Path) -> None:
    # 50.00 topped up at available ≥ 0 earns 50 basic points; 51 is one too many.
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00", "counter"),
        redeem("R1", "A1", 51, "2026-03-02T03:00"),
        redeem("R2", "A1", 50, "2026-03-02T04:00"),
    )
    assert_rejected(result, "payments:2", "insufficient_points")
    assert_applied(result, "payments:3")


def test_unknown_account_for_payments(tmp_path: Path) -> None:
    result = with_payments(
        tmp_path,
        topup("P2", "A1", "50.00", "2026-03-01T23:00"),  # processed before A1 opens
        topup("P1", "A9", "50.00", "2026-03-02T02:00"),
        redeem("R1", "A9", 1, "2026-03-02T03:00"),
    )
    for position in ("payments:1", "payments:2", "payments:3"):
        assert_rejected(result, position, "unknown_account")


def test_payments_and_events_for_a_closed_account(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T02:00"),
        event("update", "A1", "2026-03-02T03:00", phone="13800000000"),
        event("change_plan", "A1", "2026-03-02T03:00", plan="zhejiang-tou"),
        event("close", "A1", "2026-03-02T03:00"),
        open_account("A1", "M5", "zhejiang-tiered", "2026-03-02T03:00"),
        payments=[
            topup("P1", "A1", "50.00", "2026-03-02T04:00"),
            redeem("R1", "A1", 1, "2026-03-02T04:00"),
        ],
    )
    for position in (
        "accounts:4",
        "accounts:5",
        "accounts:6",
        "accounts:7",
        "payments:1",
        "payments:2",
    ):
        assert_rejected(result, position, "account_closed")


def test_unknown_account_for_events(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("update", "A9", "2026-03-02T02:00", phone="1"),
        event("change_plan", "A9", "2026-03-02T02:00", plan="zhejiang-tou"),
        event("close", "A9", "2026-03-02T02:00"),
        replace_meter("A9", "2026-03-02T02:00", "M1", "101.000", "M7", "0.000"),
    )
    for line in (3, 4, 5, 6):
        assert_rejected(result, f"accounts:{line}", "unknown_account")


def test_open_conflicts(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        open_account("A1", "M7", "zhejiang-tiered", "2026-03-02T02:00"),
        open_account("A3", "M2", "zhejiang-tiered", "2026-03-02T02:00"),
    )
    assert_rejected(result, "accounts:3", "conflict")  # A1 is already open
    assert_rejected(result, "accounts:4", "conflict")  # M2 belongs to open A2


def test_account_event_settings_out_of_range_are_invalid_amount(tmp_path: Path) -> None:
    # S14.2: a negative threshold or an auto top-up amount ≤ 0; a negative opening is fine.
    result = on_base(
        tmp_path,
        event("update", "A1", "2026-03-02T02:00", low_balance_threshold="-0.01"),
        event("update", "A1", "2026-03-02T02:00", auto_topup_amount="0.00"),
        event("update", "A1", "2026-03-02T02:00", auto_topup_amount="-5.00"),
        open_account("A3", "M3", "zhejiang-tiered", "2026-03-02T02:00", auto_topup_amount="0"),
        open_account(
            "A4", "M4", "zhejiang-tiered", "2026-03-02T02:00", low_balance_threshold="-1.00"
        ),
        open_account("A5", "M5", "zhejiang-tiered", "2026-03-02T02:00", opening_balance="-30.00"),
        event("update", "A1", "2026-03-02T03:00", low_balance_threshold="0.00"),
        event("update", "A1", "2026-03-02T03:00", auto_topup_amount=None),
        readings=[reading("M3", "2026-03-02T04:00", "1.000")],
    )
    for line in (3, 4, 5, 6, 7):
        assert_rejected(result, f"accounts:{line}", "invalid_amount")
    details = [r["detail"] for r in result.rows("rejected", reason="invalid_amount")]
    assert "low_balance_threshold must be ≥ 0" in details[0]
    assert "auto_topup_amount must be > 0" in details[1]
    for line in (8, 9, 10):
        assert_applied(result, f"accounts:{line}")
    # The refused open opened nothing: its meter is still nobody's.
    assert_rejected(result, "readings:3", "unknown_meter")
    [threshold] = [r for r in result.rows("account_events") if r["type"] == "update"][:1]
    assert threshold["ts"] == at("2026-03-02T03:00")


def test_lifecycle_reasons_come_before_invalid_amount(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("update", "A9", "2026-03-02T02:00", low_balance_threshold="-1.00"),
        open_account("A1", "M7", "zhejiang-tiered", "2026-03-02T02:00", auto_topup_amount="0"),
        event("close", "A2", "2026-03-02T02:00"),
        event("update", "A2", "2026-03-02T03:00", auto_topup_amount="0.00"),
    )
    assert_rejected(result, "accounts:3", "unknown_account")
    assert_rejected(result, "accounts:4", "conflict")
    assert_rejected(result, "accounts:6", "account_closed")


def test_replace_meter_checks(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        replace_meter("A1", "2026-03-02T02:00", "M2", "101.000", "M7", "0.000"),
        replace_meter("A1", "2026-03-02T02:00", "M1", "101.000", "M2", "0.000"),
    )
    assert_rejected(result, "accounts:3", "unknown_meter")  # A1's meter is M1, not M2
    assert_rejected(result, "accounts:4", "conflict")  # M2 belongs to open A2


def test_rejected_reading_closes_no_day_and_triggers_no_alert(tmp_path: Path) -> None:
    # A conflicting / jumping reading on the next day must not close Mar 2 nor alert.
    result = replay(
        tmp_path,
        accounts=[
            open_account("A1", "M1", "zhejiang-tiered", "2026-03-02T00:00", opening_balance="21.00")
        ],
        readings=[
            reading("M1", "2026-03-02T00:00", "0.000"),
            reading("M1", "2026-03-03T00:15", "5000.000"),
            reading("M1", "2026-03-03T00:30", "4.000"),
        ],
    )
    assert_rejected(result, "readings:2", "implausible_jump", anomaly=True)
    assert result.positions("daily_usage")[0] == "readings:3"


# --- check order where two reasons could apply (S14.3, S14.4, S14.5) -------------------------


def test_malformed_comes_before_unknown_meter(tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "readings", reading("M9", "2026-03-02T02:00", "-1"))
    assert_rejected(result, position, "malformed")


def test_duplicate_and_conflict_come_before_out_of_order(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        readings=[
            reading("M1", "2026-03-02T02:00", "102.000"),
            reading("M1", "2026-03-02T01:00", "101.000"),  # older, same as accepted
            reading("M1", "2026-03-02T01:00", "99.000"),  # older, differs from accepted
        ],
    )
    assert_rejected(result, "readings:4", "duplicate")
    assert_rejected(result, "readings:5", "conflict")


def test_out_of_order_comes_before_regression_and_jump(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        readings=[
            reading("M1", "2026-03-02T00:30", "50.000"),  # older and lower
            reading("M1", "2026-03-02T00:45", "900.000"),  # older and a huge jump
        ],
    )
    assert_rejected(result, "readings:3", "out_of_order")
    assert_rejected(result, "readings:4", "out_of_order")
    assert result.messages("notifications", type="meter_anomaly") == []


def test_regression_when_the_rollover_would_be_a_jump(tmp_path: Path) -> None:
    # Backwards by 0.001 kWh: a rollover would be 999 999.999 kWh, far above 40 kW → regression.
    result, position = with_bad(tmp_path, "readings", reading("M1", "2026-03-02T02:00", "100.999"))
    assert_rejected(result, position, "meter_regression", anomaly=True)


def test_duplicate_payment_comes_before_closed_and_invalid_amount(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T05:00"),
        payments=[
            topup("P1", "A1", "50.00", "2026-03-02T02:00"),
            topup("P1", "A1", "0.00", "2026-03-02T03:00"),
            topup("P1", "A1", "50.00", "2026-03-02T06:00"),
        ],
    )
    assert_rejected(result, "payments:2", "duplicate_payment")
    assert_rejected(result, "payments:3", "duplicate_payment")


def test_duplicate_payment_comes_before_unknown_account(tmp_path: Path) -> None:
    # S14.4: malformed → duplicate_payment → unknown_account.
    result = with_payments(
        tmp_path,
        topup("P1", "A1", "50.00", "2026-03-02T02:00"),
        topup("P1", "A9", "50.00", "2026-03-02T03:00"),
    )
    assert_rejected(result, "payments:2", "duplicate_payment")


def test_unknown_account_and_closed_come_before_invalid_amount(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T02:00"),
        payments=[
            topup("P1", "A9", "0.00", "2026-03-02T03:00"),
            topup("P2", "A1", "-1.00", "2026-03-02T03:00"),
            redeem("R1", "A1", 0, "2026-03-02T03:00"),
        ],
    )
    assert_rejected(result, "payments:1", "unknown_account")
    assert_rejected(result, "payments:2", "account_closed")
    assert_rejected(result, "payments:3", "account_closed")


def test_invalid_amount_comes_before_insufficient_points(tmp_path: Path) -> None:
    result, position = with_bad(tmp_path, "payments", redeem("R1", "A1", 0, "2026-03-02T02:00"))
    assert_rejected(result, position, "invalid_amount")


def test_malformed_comes_before_unknown_account(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("change_plan", "A9", "2026-03-02T02:00", plan="nope"),
        payments=[topup("P1", "A9", "50.00", "2026-03-02T02:00", "paypal")],
    )
    assert_rejected(result, "accounts:3", "malformed")
    assert_rejected(result, "payments:1", "malformed")


def test_open_of_a_closed_id_is_account_closed_even_if_its_meter_is_taken(tmp_path: Path) -> None:
    result = on_base(
        tmp_path,
        event("close", "A1", "2026-03-02T02:00"),
        open_account("A1", "M2", "zhejiang-tiered", "2026-03-02T03:00"),
    )
    assert_rejected(result, "accounts:4", "account_closed")


def test_future_reading_is_rejected_against_the_arrival_clock() -> None:
    """S9 `future` (live mode): more than 5 minutes ahead of the wall clock at arrival."""
    import json

    from billing.directory import MeterDirectory
    from billing.engine import route
    from billing.messages import Envelope
    from billing.rules import BillingRules

    rules = BillingRules(reject_future=True)
    arrived = at("2026-03-02T10:00")
    soon = json.dumps({"meter_id": "M1", "ts": ts("2026-03-02T10:05"), "energy_kwh": "1.0"})
    later = json.dumps({"meter_id": "M1", "ts": ts("2026-03-02T10:05:01"), "energy_kwh": "1.0"})
    ok = route(Envelope.decode("readings", "r:1", soon, arrived), MeterDirectory(), rules)
    refused = route(Envelope.decode("readings", "r:2", later, arrived), MeterDirectory(), rules)
    assert isinstance(ok, list) and ok[0].values["reason"] == "unknown_meter"
    assert isinstance(refused, list) and refused[0].values["reason"] == "future"
    replayed = route(
        Envelope.decode("readings", "r:3", later, arrived), MeterDirectory(), BillingRules()
    )
    assert isinstance(replayed, list) and replayed[0].values["reason"] == "unknown_meter"
