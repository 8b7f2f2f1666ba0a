"""Example input sets: deterministic, well formed apart from the deliberate bad lines, realistic."""

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from simulate.example import write_example

FILES = ("accounts", "payments", "readings")
DECIMAL = re.compile(r"-?\d+(\.\d+)?")
CHANNELS = {"app", "alipay", "wechat", "bank", "counter"}
PLANS = {"zhejiang-tiered", "zhejiang-tou"}
ENERGY_FIELDS = ("energy_kwh", "ytd_kwh", "old_final_kwh", "new_initial_kwh", "final_kwh")
MONEY_FIELDS = ("opening_balance", "low_balance_threshold", "auto_topup_amount")


def _constant(text: str) -> None:
    raise ValueError(f"not JSON: {text}")


def strict_json(line: str) -> Any:
    """Parse one line as strict JSON (NaN and Infinity are not JSON)."""
    return json.loads(line, parse_constant=_constant)


def read_lines(directory: Path, name: str) -> list[str]:
    return (directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()


def parsed(directory: Path, name: str) -> list[Any]:
    """Every line of a file, parsed, or None where it is not JSON."""
    out = []
    for line in read_lines(directory, name):
        try:
            out.append(strict_json(line))
        except ValueError:
            out.append(None)
    return out


def ts_of(value: Any) -> datetime | None:
    """The timestamp of a message if it is ISO-8601 with an explicit offset."""
    if not isinstance(value, str) or len(value) < 20:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.utcoffset() is not None else None


def decimal_ok(value: Any, places: int, *, positive: bool = False) -> bool:
    if not isinstance(value, str) or not DECIMAL.fullmatch(value) or value.startswith("-"):
        return False
    fraction = value.partition(".")[2]
    return len(fraction) <= places and (not positive or Decimal(value) > 0)


def valid_reading(d: Any) -> bool:
    return (
        isinstance(d, dict)
        and isinstance(d.get("meter_id"), str)
        and ts_of(d.get("ts")) is not None
        and decimal_ok(d.get("energy_kwh"), 3)
        and (("power_w" not in d) or decimal_ok(d["power_w"], 3))
    )


def valid_payment(d: Any) -> bool:
    if not isinstance(d, dict) or ts_of(d.get("ts")) is None:
        return False
    if not isinstance(d.get("payment_id"), str) or not isinstance(d.get("account_id"), str):
        return False
    if d.get("type") == "topup":
        amount = d.get("amount")
        return (
            d.get("channel") in CHANNELS
            and decimal_ok(amount, 2, positive=True)
            and Decimal(amount) <= 10_000
        )
    if d.get("type") == "redeem":
        return type(d.get("points")) is int and d["points"] >= 1
    return False


def valid_event(d: Any) -> bool:
    if not isinstance(d, dict) or ts_of(d.get("ts")) is None:
        return False
    kind = d.get("type")
    if kind not in {"open", "change_plan", "replace_meter", "update", "close"}:
        return False
    if not isinstance(d.get("account_id"), str):
        return False
    if kind == "open" and not isinstance(d.get("meter_id"), str):
        return False
    if kind in {"open", "change_plan"} and d.get("plan") not in PLANS:
        return False
    energy = all(decimal_ok(d[f], 3) for f in ENERGY_FIELDS if f in d)
    money = all(d[f] is None or decimal_ok(d[f], 2) for f in MONEY_FIELDS if f in d)
    return energy and money


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("small")
    return directory, write_example(directory, households=20, days=5, seed=3)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("month")
    return directory, write_example(directory, households=30, days=12, seed=11)


def test_same_seed_gives_identical_bytes(small, tmp_path: Path) -> None:
    directory, summary = small
    again = write_example(tmp_path / "again", households=20, days=5, seed=3)
    assert again == summary
    for name in FILES:
        assert (tmp_path / "again" / f"{name}.jsonl").read_bytes() == (
            directory / f"{name}.jsonl"
        ).read_bytes()


def test_other_seed_or_start_gives_other_files(small, tmp_path: Path) -> None:
    directory, summary = small
    other = write_example(tmp_path / "other", households=20, days=5, seed=4)
    shifted = write_example(
        tmp_path / "shifted", households=20, days=5, seed=3, start=date(2026, 11, 2)
    )
    assert shifted["start"] == "2026-11-02"
    for name in FILES:
        mine = (directory / f"{name}.jsonl").read_bytes()
        assert (tmp_path / "other" / f"{name}.jsonl").read_bytes() != mine
        assert (tmp_path / "shifted" / f"{name}.jsonl").read_bytes() != mine
    assert other["start"] != summary["start"] or other["scenarios"] != summary["scenarios"]


def test_default_start_is_a_first_monday_of_2026(small) -> None:
    _, summary = small
    start = date.fromisoformat(summary["start"])
    assert start.year == 2026 and start.weekday() == 0 and start.day <= 7
    assert summary["end"] == (start + timedelta(days=5)).isoformat()


def test_summary_counts_the_lines(small) -> None:
    directory, summary = small
    for name in FILES:
        assert summary["lines"][name] == len(read_lines(directory, name))
    assert summary["lines"]["readings"] > 20 * 5 * 80


@pytest.mark.parametrize("fixture", ["small", "month"])
def test_only_the_deliberate_lines_are_bad(fixture: str, request: pytest.FixtureRequest) -> None:
    directory, summary = request.getfixturevalue(fixture)
    checks = {"accounts": valid_event, "payments": valid_payment, "readings": valid_reading}
    for name in FILES:
        rows = parsed(directory, name)
        assert rows.count(None) == summary["non_json_lines"][name]
        malformed = sum(not checks[name](row) for row in rows)
        bad = summary["bad_lines"][name]
        expected = bad.get("malformed", 0) + (
            bad.get("invalid_amount", 0) if name == "payments" else 0
        )
        assert malformed == expected, name
    total = sum(summary["lines"].values())
    bad_total = sum(sum(counts.values()) for counts in summary["bad_lines"].values())
    assert 0 < bad_total < total / 100


def test_good_timestamps_are_local_and_in_order(small) -> None:
    directory, summary = small
    for name in FILES:
        stamps = [ts_of(row.get("ts")) for row in parsed(directory, name) if isinstance(row, dict)]
        present = [ts for ts in stamps if ts is not None]
        assert all(ts.utcoffset() == timedelta(hours=8) for ts in present)
        start = datetime.fromisoformat(summary["start"] + "T00:00:00+08:00")
        end = datetime.fromisoformat(summary["end"] + "T00:00:00+08:00")
        assert all(start <= ts < end for ts in present)
        backwards = sum(b < a for a, b in zip(present, present[1:], strict=False))
        assert backwards == (
            summary["bad_lines"]["readings"].get("out_of_order", 0) if name == "readings" else 0
        )
    text = (directory / "readings.jsonl").read_text(encoding="utf-8")
    assert "+08:00" in text and 'Z"' not in text


def meters_of(directory: Path) -> dict[str, str]:
    """meter id -> account id, from the accepted-looking open and replace events."""
    owners: dict[str, str] = {}
    for row in parsed(directory, "accounts"):
        if valid_event(row) and row["type"] == "open":
            owners.setdefault(row["meter_id"], row["account_id"])
        if valid_event(row) and row["type"] == "replace_meter":
            owners.setdefault(row["new_meter_id"], row["account_id"])
    return owners


@pytest.mark.parametrize("fixture", ["small", "month"])
def test_registers_only_go_back_where_intended(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    directory, summary = request.getfixturevalue(fixture)
    owners = meters_of(directory)
    allowed = set(summary["scenarios"].get("meter_regression", []))
    allowed |= set(summary["scenarios"].get("register_rollover", []))
    last: dict[str, tuple[datetime, Decimal]] = {}
    seen = Counter()
    for row in parsed(directory, "readings"):
        if not valid_reading(row) or row["meter_id"] not in owners:
            continue
        ts, energy = ts_of(row["ts"]), Decimal(row["energy_kwh"])
        previous = last.get(row["meter_id"])
        if previous is not None:
            if ts <= previous[0]:
                seen["stale"] += 1
                continue
            hours = Decimal((ts - previous[0]).total_seconds()) / 3600
            if energy > previous[1] and (energy - previous[1]) / hours > 40:
                seen["jump"] += 1
                continue
            if energy < previous[1]:
                assert owners[row["meter_id"]] in allowed, row
                seen["backwards"] += 1
        last[row["meter_id"]] = (ts, energy)
    bad = summary["bad_lines"]["readings"]
    assert seen["jump"] == bad.get("implausible_jump", 0)
    stale = bad.get("duplicate", 0) + bad.get("conflict", 0) + bad.get("out_of_order", 0)
    assert seen["stale"] == stale
    assert seen["backwards"] == len(allowed)


def test_every_kind_of_event_and_payment(small) -> None:
    directory, summary = small
    events = [row for row in parsed(directory, "accounts") if valid_event(row)]
    kinds = Counter(row["type"] for row in events)
    assert {"open", "change_plan", "replace_meter", "update", "close"} <= set(kinds)
    opens = [row for row in events if row["type"] == "open"]
    assert {row["plan"] for row in opens} == PLANS
    assert any("auto_topup_amount" in row for row in opens)
    assert any("phone" in row and "locale" in row and "district" in row for row in opens)
    assert any("ytd_kwh" in row for row in opens)
    assert any(row["type"] == "close" and "final_kwh" in row for row in events)
    payments = [row for row in parsed(directory, "payments") if valid_payment(row)]
    topups = [row for row in payments if row["type"] == "topup"]
    assert {row["channel"] for row in topups} == CHANNELS
    assert any(
        Decimal(row["amount"]) >= 500 and row["channel"] in {"app", "alipay", "wechat"}
        for row in topups
    )
    assert any(row["type"] == "redeem" for row in payments)
    bad = summary["bad_lines"]
    assert {"malformed", "unknown_account", "account_closed", "conflict"} <= set(bad["accounts"])
    for reason in ("duplicate_payment", "invalid_amount", "insufficient_points", "account_closed"):
        assert reason in bad["payments"]
    for reason in ("malformed", "unknown_meter", "duplicate", "conflict", "out_of_order"):
        assert reason in bad["readings"]
    assert {"implausible_jump", "meter_regression"} <= set(bad["readings"])


def test_auto_topups_answer_requests(small) -> None:
    directory, summary = small
    stamps: dict[str, set[str]] = defaultdict(set)
    for row in parsed(directory, "readings"):
        if valid_reading(row):
            stamps[row["meter_id"]].add(row["ts"])
    owners = {account: meter for meter, account in meters_of(directory).items()}
    auto = set(summary["scenarios"]["auto_topup"])
    answers = [
        row for row in parsed(directory, "payments") if valid_payment(row) and row.get("request_id")
    ]
    assert answers
    for row in answers:
        prefix, account, trigger = row["request_id"].split(":", 2)
        assert prefix == "autotopup" and account == row["account_id"] in auto
        assert row["channel"] == "bank"
        assert ts_of(trigger) < ts_of(row["ts"])
        assert trigger in stamps[owners[account]]


def test_daily_consumption_is_realistic(month) -> None:
    directory, summary = month
    per_day: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for row in parsed(directory, "readings"):
        if valid_reading(row):
            per_day[(row["meter_id"], row["ts"][:10])].append(Decimal(row["energy_kwh"]))
    days = [max(values) - min(values) for values in per_day.values() if len(values) == 96]
    days = [kwh for kwh in days if kwh < 200]  # a register that rolled over or was reset
    assert len(days) > 200
    mean = sum(days) / len(days)
    assert Decimal(5) <= mean <= Decimal(15)
    assert all(Decimal("0.5") <= kwh <= Decimal(40) for kwh in days if kwh)


def test_arrears_disconnection_and_reconnection(month) -> None:
    directory, summary = month
    scenarios = summary["scenarios"]
    cut = set(scenarios.get("disconnected_in_window", [])) | set(
        scenarios.get("disconnected_after_schedule", [])
    )
    assert scenarios["arrears"] and scenarios["disconnect_scheduled"] and cut
    assert scenarios["reconnected"]
    assert scenarios["consumption_while_disconnected"]
    # a household that was cut off and does not bypass the meter uses nothing for a while
    owners = meters_of(directory)
    flat = Counter()
    previous: dict[str, str] = {}
    for row in parsed(directory, "readings"):
        if valid_reading(row) and owners.get(row["meter_id"]) in cut:
            meter = row["meter_id"]
            if previous.get(meter) == row["energy_kwh"]:
                flat[owners[meter]] += 1
            previous[meter] = row["energy_kwh"]
    quiet = cut - set(scenarios["consumption_while_disconnected"])
    assert any(flat[account] >= 4 for account in quiet)


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        write_example(tmp_path, households=0, days=5, seed=1)


@pytest.mark.slow
def test_benchmark_size_has_a_million_readings(tmp_path: Path) -> None:
    import time

    started = time.perf_counter()
    summary = write_example(tmp_path, households=400, days=30, seed=7)
    assert summary["lines"]["readings"] >= 1_000_000
    assert time.perf_counter() - started < 60
