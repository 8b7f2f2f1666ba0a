"""The tamper alarm after a confirmed cut, and relay results (SPEC S14.16, S2).

Plan ``unit`` costs 1.00 yuan/kWh, so kWh and yuan read alike. 2026-03-02 is a Monday: cuts
happen at once inside the window. The account opens with 5.00 and an overdraft limit of
10.00, so the reading at 09:00 of 16 kWh (5 − 16 = −11 < −10) cuts the supply.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing.clock import parse_ts
from billing.directory import MeterDirectory
from billing.emitter import Emitter
from billing.engine import Routed, apply, route
from billing.messages import COMMAND_RESULTS, CommandResult, Envelope
from billing.outputs import Row, TopicMessage
from billing.rules import BillingRules
from billing.state import DISCONNECTED, AccountState
from billing.tamper import apply_command_result, cut_confirmed_at, is_tamper, record_cut
from billing.tariffs import BUILTIN_PLANS, ZHEJIANG_BOUNDS, Plan
from pipelines.wire import pack_routed, unpack_routed
from tests import billing_harness as harness
from tests.billing_harness import Replay, at, command_result, ts

D = Decimal
UNIT = Plan("unit", ZHEJIANG_BOUNDS, {"flat": (D("1.00"), D("1.00"), D("1.00"))})
RULES = BillingRules(plans={**BUILTIN_PLANS, "unit": UNIT})
MON = "2026-03-02"
CUT = f"disconnect:A1:M1@{ts(f'{MON}T09:00')}"  # the id of the 09:00 reading's cut


def run(tmp_path: Path, readings: list[str], results: list[Any] | None, **kw: Any) -> Replay:
    """A1 on meter M1, 5.00, cut by the 09:00 reading; ``readings`` are "HH:MM=kWh"."""
    rows = [harness.reading("M1", f"{MON}T00:00", "0.000")]
    rows.append(harness.reading("M1", f"{MON}T09:00", "16.000"))
    for item in readings:
        when, kwh = item.split("=")
        rows.append(harness.reading("M1", f"{MON}T{when}", kwh))
    return harness.replay(
        tmp_path,
        accounts=[harness.open_account("A1", "M1", "unit", f"{MON}T00:00", opening_balance="5.00")],
        readings=rows,
        results=results,
        rules=kw.get("rules", RULES),
    )


def alarms(result: Replay) -> list[tuple[str, str]]:
    notes = result.notes("consumption_while_disconnected")
    return [(n["ts"], n["data"]["kwh"]) for n in notes]


def rejected(result: Replay) -> list[tuple[str, str]]:
    return [(r["topic"], r["reason"]) for r in result.rows("rejected")]


def result_at(when: str, *, ok: bool = True, command_id: str = CUT, **extra: Any) -> dict:
    return command_result(command_id, "M1", f"{MON}T{when}", ok=ok, **extra)


# --- no results in the input: the grace period confirms -----------------------------------


def test_without_results_a_cut_confirms_after_the_grace(tmp_path: Path) -> None:
    result = run(tmp_path, ["09:20=16.100", "09:30=16.200", "10:00=16.300"], None)
    assert [c["action"] for c in result.commands()] == ["disconnect"]
    # 09:20 and 09:30 cover intervals that start before 09:30; 10:00's starts at 09:30.
    assert alarms(result) == [(ts(f"{MON}T10:00"), "0.100")]


def test_the_grace_is_a_setting(tmp_path: Path) -> None:
    rules = replace(RULES, tamper_grace_minutes=60)
    result = run(tmp_path, ["09:30=16.200", "10:00=16.300", "10:30=16.400"], None, rules=rules)
    assert alarms(result) == [(ts(f"{MON}T10:30"), "0.100")]


def test_consumption_before_confirmation_is_billed_and_raises_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, ["09:29=17.000"], None)
    assert alarms(result) == []
    [day] = result.rows("daily_usage")
    assert (day["kwh"], day["charge"]) == (D("17.000"), D("17.00"))


# --- with results: only an ok result confirms ---------------------------------------------


def test_an_ok_result_confirms_the_cut_at_its_ts(tmp_path: Path) -> None:
    readings = ["09:05=16.100", "09:15=16.200", "09:20=16.300"]
    result = run(tmp_path, readings, [result_at("09:10")])
    # 09:15 covers [09:05, 09:15), which starts before 09:10; 09:20 covers [09:15, 09:20).
    assert alarms(result) == [(ts(f"{MON}T09:20"), "0.100")]
    assert rejected(result) == []


def test_a_result_at_the_interval_start_confirms_it(tmp_path: Path) -> None:
    result = run(tmp_path, ["09:10=16.100", "09:20=16.200"], [result_at("09:10")])
    assert alarms(result) == [(ts(f"{MON}T09:20"), "0.100")]


def test_a_cut_whose_result_never_arrives_raises_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, ["10:00=16.500", "12:00=18.000"], [])
    assert alarms(result) == []


def test_a_failed_relay_raises_a_meter_anomaly_and_confirms_nothing(tmp_path: Path) -> None:
    results = [result_at("09:05", ok=False, error="timeout"), result_at("11:00")]
    result = run(tmp_path, ["10:00=16.500", "11:00=17.000", "12:00=17.500"], results)
    [anomaly] = result.notes("meter_anomaly")
    assert anomaly["ts"] == ts(f"{MON}T09:05")
    assert anomaly["data"] == {
        "meter_id": "M1",
        "reason": "relay_failed",
        "command_id": CUT,
        "error": "timeout",
    }
    # The retry's ok result at 11:00 confirms: only the interval from 11:00 on is an alarm.
    assert alarms(result) == [(ts(f"{MON}T12:00"), "0.500")]
    assert [e["type"] for e in result.rows("events") if e["type"] == "meter_anomaly"] == [
        "meter_anomaly"
    ]


def test_results_for_unknown_or_confirmed_commands_are_ignored(tmp_path: Path) -> None:
    results = [
        result_at("08:00", command_id="disconnect:A9:elsewhere"),  # unknown command
        command_result(CUT, "M7", f"{MON}T09:01"),  # a meter nobody owns
        result_at("09:10"),  # confirms
        result_at("09:40"),  # already confirmed: the confirmation stays at 09:10
        result_at("09:50", ok=False, error="late"),  # already confirmed: no anomaly
        result_at("09:55", command_id="reconnect:A1:P1"),  # not the period's disconnect
    ]
    result = run(tmp_path, ["09:10=16.100", "09:30=16.200"], results)
    assert alarms(result) == [(ts(f"{MON}T09:30"), "0.100")]
    assert result.notes("meter_anomaly") == []
    assert rejected(result) == []
    results_file = [e.position for e in result.inputs if e.topic == COMMAND_RESULTS]
    assert len(results_file) == len(results)
    for position in results_file:  # applied or ignored, never rejected
        assert not [o for o in result.caused_by(position) if isinstance(o, Row)]


def test_results_never_change_money(tmp_path: Path) -> None:
    readings = ["10:00=16.500", "12:00=18.000"]
    without = run(tmp_path, readings, [])
    with_results = run(tmp_path, readings, [result_at("09:10"), result_at("09:20", ok=False)])
    assert without.rows("ledger") == with_results.rows("ledger")
    assert without.rows("daily_usage") == with_results.rows("daily_usage")


def test_a_reconnected_period_forgets_its_command(tmp_path: Path) -> None:
    accounts = [harness.open_account("A1", "M1", "unit", f"{MON}T00:00", opening_balance="5.00")]
    result = harness.replay(
        tmp_path,
        accounts=accounts,
        payments=[harness.topup("P1", "A1", "50.00", f"{MON}T09:30", "counter")],
        readings=[
            harness.reading("M1", f"{MON}T00:00", "0.000"),
            harness.reading("M1", f"{MON}T09:00", "16.000"),
            harness.reading("M1", f"{MON}T11:00", "17.000"),
        ],
        results=[result_at("10:00")],  # the reconnect came first: nothing to confirm
        rules=RULES,
    )
    assert [c["action"] for c in result.commands()] == ["disconnect", "reconnect"]
    assert alarms(result) == []


def test_malformed_results_are_rejected(tmp_path: Path) -> None:
    bad = [
        "not json",
        {"meter_id": "M1", "ok": True, "ts": ts(f"{MON}T09:10")},  # no command_id
        {"command_id": CUT, "meter_id": "M1", "ok": "yes", "ts": ts(f"{MON}T09:10")},
        {"command_id": CUT, "meter_id": "M1", "ok": True, "ts": "2026-03-02T09:10:00"},
        {"command_id": CUT, "meter_id": "M1", "ok": False, "ts": ts(f"{MON}T09:10"), "error": 3},
    ]
    result = run(tmp_path, ["10:00=16.500"], bad)
    assert rejected(result) == [(COMMAND_RESULTS, "malformed")] * len(bad)
    dlq = result.messages("dlq")
    assert [m["key"] for m in dlq] == ["", "M1", "M1", "M1", "M1"]
    assert alarms(result) == []  # nothing confirmed the cut


# --- the rule functions on their own --------------------------------------------------------


def cut_state(rules: BillingRules = RULES) -> AccountState:
    """A1 just after the 09:00 reading cut its supply, run through route and apply."""
    lines = [
        ("accounts", harness.open_account("A1", "M1", "unit", f"{MON}T00:00", opening_balance="5")),
        ("readings", harness.reading("M1", f"{MON}T00:00", "0.000")),
        ("readings", harness.reading("M1", f"{MON}T09:00", "16.000")),
    ]
    directory, state = MeterDirectory(), None
    for number, (topic, value) in enumerate(lines):
        envelope = Envelope.decode(
            topic, f"{topic}:{number}", json.dumps(value), at(f"{MON}T09:00")
        )
        routed = route(envelope, directory, rules)
        assert isinstance(routed, tuple)
        state = apply(state, routed[1], rules).state
    assert state is not None and state.status == DISCONNECTED
    return state


def test_rule_functions() -> None:
    state = cut_state()
    assert state.cut_command == (CUT, at(f"{MON}T09:00"))
    assert cut_confirmed_at(state, RULES) == at(f"{MON}T09:30")
    live = replace(RULES, command_results=True)
    assert cut_confirmed_at(state, live) is None
    assert not is_tamper(state, at(f"{MON}T10:00"), 100, live)
    assert is_tamper(state, at(f"{MON}T09:30"), 11, RULES)
    assert not is_tamper(state, at(f"{MON}T09:29"), 11, RULES)
    assert not is_tamper(state, at(f"{MON}T09:30"), 10, RULES)  # not > 0.01 kWh
    out = Emitter()
    ok = CommandResult(CUT, "M1", True, at(f"{MON}T09:05"))
    assert apply_command_result(state, ok, out, "c")
    assert out.outputs == []
    assert cut_confirmed_at(state, live) == at(f"{MON}T09:05")
    assert not apply_command_result(state, replace(ok, ts=at(f"{MON}T09:06")), out, "c")
    assert cut_confirmed_at(state, RULES) == at(f"{MON}T09:05")
    record_cut(state, "disconnect:A1:again", at(f"{MON}T14:00"))
    assert cut_confirmed_at(state, RULES) == at(f"{MON}T14:30")
    failed = CommandResult("disconnect:A1:again", "M1", False, at(f"{MON}T14:01"), "timeout")
    assert apply_command_result(state, failed, out, "c")
    [notice] = [o for o in out.outputs if isinstance(o, TopicMessage)]
    assert notice.value["data"]["reason"] == "relay_failed"


def test_the_cut_survives_a_snapshot_and_old_snapshots_load() -> None:
    state = cut_state()
    state.cut_confirmed = at(f"{MON}T09:05") + timedelta(microseconds=3)
    back = pickle.loads(pickle.dumps(state))  # noqa: S301
    assert back.cut_command == state.cut_command
    assert back.cut_confirmed == state.cut_confirmed
    assert back.cut_command[1].tzinfo is state.cut_command[1].tzinfo
    old = state.__getstate__()[:39]  # a snapshot from before the cut fields
    fresh = AccountState.__new__(AccountState)
    fresh.__setstate__(old)
    assert (fresh.cut_command, fresh.cut_confirmed) == (None, None)
    assert fresh.balance == state.balance and fresh.version == state.version


def test_a_result_crosses_workers_intact() -> None:
    raw = '{"command_id": "c1", "meter_id": "M1", "ok": false, "ts": "2026-03-02T09:00:00+08:00"}'
    envelope = Envelope.decode(COMMAND_RESULTS, "meter-command-results:1", raw, at(f"{MON}T09:00"))
    message = CommandResult("c1", "M1", False, parse_ts("2026-03-02T09:00:00+08:00"), "e")
    back = unpack_routed(pack_routed(Routed(envelope, message)))
    assert back.message == message
    assert back.envelope.key == "M1"
