"""Invariants over random message streams (SPEC S3, S5, S6, S8, S9, S14), with hypothesis.

Streams mix valid and invalid readings, payments and account events. Every input must be
applied or rejected (never both, never neither); balances must follow from the ledger; points
from the points ledger; daily rows from the rated intervals.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.clock import LOCAL_ZONE, parse_ts
from billing.messages import Envelope
from billing.outputs import Output, Row, TopicMessage, json_text
from tests.billing_harness import Replay, run

D = Decimal
T0 = datetime(2026, 3, 2, tzinfo=LOCAL_ZONE)  # a Monday
RECEIVED = T0

REASONS = {
    "readings": {
        "malformed",
        "unknown_meter",
        "duplicate",
        "conflict",
        "out_of_order",
        "implausible_jump",
        "meter_regression",
    },
    "payments": {
        "malformed",
        "duplicate_payment",
        "unknown_account",
        "account_closed",
        "invalid_amount",
        "insufficient_points",
    },
    "accounts": {"malformed", "unknown_account", "account_closed", "conflict", "unknown_meter"},
}
CREDITS = {"topup", "rebate", "points_redemption"}


# --- random streams ---------------------------------------------------------------------------

ACCOUNTS = ("A1", "A2", "A3", "A4")
METERS = ("M1", "M2", "M3", "M4", "M7", "M9")
PLANS = ("zhejiang-tiered", "zhejiang-tou")
METER_PICKS = ("M1", "M1", "M1", "M2", "M2", "M2", "M3", "M3", "M3", "M4", "M7", "M9")
ACCOUNT_PICKS = ("A1", "A1", "A1", "A2", "A2", "A2", "A3", "A3", "A3", "A4", "A9")
KINDS = (
    ("reading",) * 10
    + ("topup",) * 3
    + ("redeem", "update", "change_plan", "close", "open", "replace", "garbage")
)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def kwh_text(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """(topic, payload dict or raw line) in processing order."""
    items: list[tuple[str, Any]] = []
    clock = T0
    energy = {m: draw(st.integers(0, 50_000_000)) for m in METERS}
    last: dict[str, tuple[datetime, int]] = {}
    for account_id, meter_id in zip(ACCOUNTS[:3], METERS[:3], strict=True):
        payload = {
            "type": "open",
            "account_id": account_id,
            "meter_id": meter_id,
            "plan": draw(st.sampled_from(PLANS)),
            "ts": iso(clock),
            "opening_balance": draw(st.sampled_from(["0.00", "5.00", "30.00", "250.00"])),
            "ytd_kwh": draw(st.sampled_from(["0", "2759.5", "4799.990"])),
        }
        if draw(st.booleans()):
            payload["auto_topup_amount"] = "50.00"
        items.append(("accounts", payload))
    for _ in range(draw(st.integers(0, 40))):
        clock += timedelta(minutes=draw(st.sampled_from([0, 1, 15, 15, 60, 240, 600, 1500])))
        kind = draw(st.sampled_from(KINDS))
        account_id = draw(st.sampled_from(ACCOUNT_PICKS))
        pid = draw(st.sampled_from([f"P{i}" for i in range(8)]))
        if kind == "reading":
            meter = draw(st.sampled_from(METER_PICKS))
            mode = draw(
                st.sampled_from(
                    ["step"] * 8 + ["zero", "jump", "back", "again", "older", "near_max"]
                )
            )
            moment = clock
            if mode == "step":
                # a mean power of 0–30 kW since the meter's last reading
                minutes = (clock - last[meter][0]) // timedelta(minutes=1) if meter in last else 15
                milli = draw(st.integers(0, 30)) * max(minutes, 1) * 1000 // 60
                energy[meter] = (energy[meter] + milli) % 10**9
            elif mode == "jump":
                energy[meter] = (energy[meter] + 10**7) % 10**9
            elif mode == "back":
                energy[meter] = max(0, energy[meter] - draw(st.integers(1, 5000)))
            elif mode == "near_max":
                energy[meter] = 10**9 - draw(st.integers(1, 3000))
            elif mode == "again" and meter in last:
                moment, previous = last[meter]
                energy[meter] = previous + draw(st.sampled_from([0, 0, 1]))
            elif mode == "older" and meter in last:
                moment = last[meter][0] - timedelta(minutes=1)
            last[meter] = (moment, energy[meter])
            items.append(
                (
                    "readings",
                    {"meter_id": meter, "ts": iso(moment), "energy_kwh": kwh_text(energy[meter])},
                )
            )
        elif kind == "topup":
            items.append(
                (
                    "payments",
                    {
                        "type": "topup",
                        "payment_id": pid,
                        "account_id": account_id,
                        "ts": iso(clock),
                        "amount": draw(
                            st.sampled_from(
                                [
                                    "0.00",
                                    "5.00",
                                    "20.00",
                                    "75.50",
                                    "500.00",
                                    "1000",
                                    "-3.00",
                                    "12.345",
                                    "10000.01",
                                ]
                            )
                        ),
                        "channel": draw(
                            st.sampled_from(
                                ["app", "alipay", "wechat", "bank", "counter", "paypal"]
                            )
                        ),
                    },
                )
            )
        elif kind == "redeem":
            items.append(
                (
                    "payments",
                    {
                        "type": "redeem",
                        "payment_id": pid,
                        "account_id": account_id,
                        "ts": iso(clock),
                        "points": draw(st.sampled_from([0, 1, 25, 300, 10**6, "5"])),
                    },
                )
            )
        elif kind == "update":
            payload = {
                "type": "update",
                "account_id": account_id,
                "ts": iso(clock),
                "low_balance_threshold": draw(st.sampled_from(["5.00", "50.00", "1.001"])),
            }
            if draw(st.booleans()):
                payload["auto_topup_amount"] = draw(st.sampled_from([None, "30.00"]))
            items.append(("accounts", payload))
        elif kind == "change_plan":
            items.append(
                (
                    "accounts",
                    {
                        "type": "change_plan",
                        "account_id": account_id,
                        "ts": iso(clock),
                        "plan": draw(st.sampled_from((*PLANS, "nope"))),
                    },
                )
            )
        elif kind == "close":
            payload = {"type": "close", "account_id": account_id, "ts": iso(clock)}
            if draw(st.booleans()):
                meter = draw(st.sampled_from(METERS))
                energy[meter] += draw(st.integers(0, 3000))
                payload["final_kwh"] = kwh_text(energy[meter])
            items.append(("accounts", payload))
        elif kind == "open":
            items.append(
                (
                    "accounts",
                    {
                        "type": "open",
                        "account_id": account_id,
                        "ts": iso(clock),
                        "meter_id": draw(st.sampled_from(METERS)),
                        "plan": draw(st.sampled_from(PLANS)),
                        "opening_balance": draw(st.sampled_from(["0.00", "40.00", "1.234"])),
                    },
                )
            )
        elif kind == "replace":
            old, new = draw(st.sampled_from(METERS)), draw(st.sampled_from(METERS))
            energy[old] += draw(st.integers(0, 4000))
            energy[new] = draw(st.integers(0, 5000))
            items.append(
                (
                    "accounts",
                    {
                        "type": "replace_meter",
                        "account_id": account_id,
                        "ts": iso(clock),
                        "old_meter_id": old,
                        "old_final_kwh": kwh_text(energy[old]),
                        "new_meter_id": new,
                        "new_initial_kwh": kwh_text(energy[new]),
                    },
                )
            )
            last.pop(new, None)
        else:
            items.append(
                (
                    draw(st.sampled_from(["readings", "payments", "accounts"])),
                    draw(
                        st.sampled_from(
                            [
                                "{",
                                "[]",
                                "null",
                                '{"ts": "2026-03-02"}',
                                '{"meter_id": "M1", "energy_kwh": 1.5}',
                            ]
                        )
                    ),
                )
            )
    return items


def envelopes(items: list[tuple[str, Any]]) -> list[Envelope]:
    return [
        Envelope.decode(
            topic, f"{topic}:{n}", item if isinstance(item, str) else json.dumps(item), RECEIVED
        )
        for n, (topic, item) in enumerate(items, start=1)
    ]


# --- the invariants ---------------------------------------------------------------------------


def _kind(output: Output) -> tuple[str, str]:
    if isinstance(output, Row):
        return output.table, str(output.values.get("type", ""))
    assert isinstance(output, TopicMessage)
    return output.topic, str(output.value.get("type", ""))


def check_applied_or_rejected(result: Replay) -> dict[str, dict[str, Any]]:
    """Every input is applied or rejected, never both, never neither; returns applied opens."""
    caused = result.by_position()
    opens: dict[str, dict[str, Any]] = {}
    for envelope in result.inputs:
        outputs = caused.get(envelope.position, [])
        rejected = [o for o in outputs if isinstance(o, Row) and o.table == "rejected"]
        dlq = [o for o in outputs if isinstance(o, TopicMessage) and o.topic == "dlq"]
        assert len(rejected) == len(dlq) <= 1, (envelope, outputs)
        if rejected:
            reason = rejected[0].values["reason"]
            assert reason == dlq[0].value["reason"]
            assert reason in REASONS[envelope.topic], (envelope.raw, reason)
            assert rejected[0].values["payload"] == envelope.raw == dlq[0].value["payload"]
            others = {_kind(o) for o in outputs if o is not rejected[0] and o is not dlq[0]}
            assert others <= {("events", "meter_anomaly"), ("notifications", "meter_anomaly")}, (
                envelope.raw,
                reason,
                outputs,
            )
            if others:
                assert reason in {"implausible_jump", "meter_regression"}
            continue
        payload = envelope.payload
        assert isinstance(payload, dict), envelope.raw
        if envelope.topic == "readings":
            rows = [o.values for o in outputs if isinstance(o, Row) and o.table == "readings"]
            assert [(r["meter_id"], r["ts"], r["energy_kwh"]) for r in rows] == [
                (payload["meter_id"], parse_ts(payload["ts"]), D(payload["energy_kwh"]))
            ], (envelope.raw, outputs)
        elif envelope.topic == "payments":
            credit = "topup" if payload["type"] == "topup" else "points_redemption"
            rows = [
                o.values
                for o in outputs
                if isinstance(o, Row)
                and o.table == "ledger"
                and o.values["kind"] == credit
                and o.values["ref"] == payload["payment_id"]
            ]
            assert len(rows) == 1, (envelope.raw, outputs)
            assert rows[0]["account_id"] == payload["account_id"]
        else:
            rows = [
                o.values
                for o in outputs
                if isinstance(o, Row)
                and o.table == "accounts"
                and o.values["account_id"] == payload["account_id"]
            ]
            assert rows, (envelope.raw, outputs)
            if payload["type"] == "open":
                opens[payload["account_id"]] = payload
    return opens


def check_money(result: Replay, opens: dict[str, dict[str, Any]]) -> None:
    """balance = opening + credits − charges − refunds; balance_after is a running sum."""
    ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.rows("ledger"):
        ledger[row["account_id"]].append(row)
    final = {row["account_id"]: row for row in result.rows("accounts")}
    assert set(final) == set(opens)
    for account_id, opening in opens.items():
        balance = D(opening.get("opening_balance", "0.00"))
        credits = charges = refunds = D(0)
        for row in ledger[account_id]:
            amount = row["amount"]
            assert amount == amount.quantize(D("0.01"))
            if row["kind"] in CREDITS:
                assert amount > 0
                credits += amount
            elif row["kind"] == "charge":
                assert amount <= 0
                charges -= amount
            else:
                assert row["kind"] == "refund" and amount < 0
                refunds -= amount
            balance += amount
            assert row["balance_after"] == balance, (account_id, row)
        opening_balance = D(opening.get("opening_balance", "0.00"))
        assert final[account_id]["balance"] == opening_balance + credits - charges - refunds
        if final[account_id]["status"] == "closed":
            assert final[account_id]["balance"] <= 0


def check_points(result: Replay) -> None:
    held: dict[str, int] = defaultdict(int)
    for row in result.rows("points_ledger"):
        assert isinstance(row["points"], int) and row["points"] != 0
        assert (row["points"] > 0) == (row["kind"] in {"basic", "daily"})
        held[row["account_id"]] += row["points"]
        assert row["balance_after"] == held[row["account_id"]] >= 0, row
    for account_id, row in {r["account_id"]: r for r in result.rows("accounts")}.items():
        assert row["points"] == held[account_id]


def check_days(result: Replay) -> None:
    """One row per closed day, consistent with the intervals rated into it and the ledger."""
    charges = {
        (r["account_id"], r["ref"]): r for r in result.rows("ledger") if r["kind"] == "charge"
    }
    rated: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for interval in result.rows("intervals"):
        rated[(interval["account_id"], interval["start"].date())].append(interval)
        assert interval["cost"] == interval["kwh"] * interval["price"]
    days: dict[str, list[Any]] = defaultdict(list)
    for row in result.rows("daily_usage"):
        key = (row["account_id"], row["day"])
        days[row["account_id"]].append(row["day"])
        assert row["kwh"] == row["kwh_tier1"] + row["kwh_tier2"] + row["kwh_tier3"]
        assert row["kwh_peak"] + row["kwh_valley"] <= row["kwh"]
        pieces = rated.pop(key, [])
        assert sum((p["kwh"] for p in pieces), D(0)) == row["kwh"]
        exact = sum((p["cost"] for p in pieces), D(0))
        assert row["charge"] == exact.quantize(D("0.01"), rounding=ROUND_HALF_UP)
        ledger = charges.pop((row["account_id"], row["day"].isoformat()))
        assert ledger["amount"] == -row["charge"]
        assert ledger["balance_after"] == row["closing_balance"]
    assert charges == {}
    # Intervals left over belong to no closed day: impossible, the end of input closes them.
    assert [k for k, v in rated.items() if any(p["kwh"] for p in v)] == []
    for account_days in days.values():
        assert account_days == sorted(set(account_days))
        for before, after in zip(account_days, account_days[1:], strict=False):
            assert (after - before).days == 1


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=streams())
def test_random_streams_keep_the_invariants(items: list[tuple[str, Any]]) -> None:
    stream = envelopes(items)
    result = run(stream)
    opens = check_applied_or_rejected(result)
    check_money(result, opens)
    check_points(result)
    check_days(result)
    # Counter invariant per topic: in = applied + rejected.
    rejected = defaultdict(int)
    for row in result.rows("rejected"):
        rejected[row["topic"]] += 1
    for topic in REASONS:
        total = sum(1 for e in stream if e.topic == topic)
        assert rejected[topic] <= total


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=streams())
def test_a_replayed_run_emits_the_same_outputs_and_ids(items: list[tuple[str, Any]]) -> None:
    def canonical(result: Replay) -> list[str]:
        return [
            json_text(o.values) if isinstance(o, Row) else json_text(o.value)
            for _, o in result.outputs
        ]

    assert canonical(run(envelopes(items))) == canonical(run(envelopes(items)))
