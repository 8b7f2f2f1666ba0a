"""The rater's input read from the stream's ``intervals`` rates like the one read from readings.

A small town billed by ``wattpay replay`` (so ``intervals`` are the stream's own), with every
case that decides where an account is read from: quarter hours only (flat and TOU), a gap
across 08:00 on a flat meter (a TOU cut inside a part: read from readings), a gap across 22:00
on a TOU meter (the stream cut it there), a plan change mid-day (parts rated apart), a
rollover, a meter regression (rebased), a meter replacement, readings before the account
opens, a close with a final reading, tier crossings and 1 January. Days, tiers and money of
`jobs.aggregates.from_intervals` must be the integers of `jobs.aggregates.aggregated`, under
the accounts' own plans, the other built-in plan and a proposal whose peak runs 09:00–21:00.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from config.settings import load_settings
from jobs import aggregates, tables
from jobs.analysis import alt_plans
from jobs.rater import PlanData, opening_ytd, plan_data, plan_timeline
from jobs.rating import daily
from store.clickhouse import ClickHouseStore

WATTPAY = [sys.executable, "-m", "wattpay.cli"]
REGISTER_MAX = 1_000_000_000  # milli: the default 1,000,000 kWh register
PROPOSED = PlanData(
    "proposed-tou",
    (2_400_000, 4_200_000),
    {"peak": (5980, 6480, 8980), "valley": (2680, 3180, 5680)},
    ((time(0), "valley"), (time(9), "peak"), (time(21), "valley")),
)


def _kwh(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"


def _open(aid: str, meter: str, plan: str, at: datetime, ytd: str = "0") -> dict:
    return {
        "type": "open",
        "account_id": aid,
        "meter_id": meter,
        "plan": plan,
        "ts": at.isoformat(),
        "opening_balance": "100000.00",
        "ytd_kwh": ytd,
    }


def _series(
    rng: random.Random,
    meter: str,
    start: datetime,
    end: datetime,
    register: int,
    gaps: dict[datetime, datetime] | None = None,
) -> tuple[list[dict], int]:
    """Quarter-hour readings of ``meter``; each key of ``gaps`` jumps to its value."""
    rows, ts = [], start
    while ts < end:
        rows.append(
            {
                "meter_id": meter,
                "ts": ts.isoformat(),
                "energy_kwh": _kwh(register),
            }
        )
        following = (gaps or {}).get(ts, ts + timedelta(minutes=15))
        minutes = (following - ts) // timedelta(minutes=1)
        register = (register + rng.randint(1, 600) * minutes // 15) % REGISTER_MAX
        ts = following
    return rows, register


def _town(tz: ZoneInfo) -> tuple[list[dict], list[dict]]:
    rng = random.Random(17)
    accounts, readings = [], []
    begin, end = datetime(2026, 12, 20, tzinfo=tz), datetime(2027, 1, 12, tzinfo=tz)
    day = datetime(2026, 12, 28, tzinfo=tz)
    # H1 flat, near its tier bound, gaps across 08:00 and across midnight.
    accounts.append(_open("H1", "M1", "zhejiang-tiered", begin, ytd="2750"))
    gaps = {
        day.replace(hour=7, minute=30): day.replace(hour=9, minute=15),
        day.replace(hour=23): day + timedelta(days=1, hours=1),
    }
    readings += _series(rng, "M1", begin, end, 5_000, gaps)[0]
    # H2 flat, quarter hours only: read from its intervals alone.
    accounts.append(_open("H2", "M2", "zhejiang-tiered", begin, ytd="4790"))
    readings += _series(rng, "M2", begin, end, 0)[0]
    # H3 TOU, quarter hours and a gap across 22:00, which the stream cuts.
    accounts.append(_open("H3", "M3", "zhejiang-tou", begin, ytd="2700"))
    gaps = {day.replace(hour=21, minute=15): day.replace(hour=22, minute=45)}
    readings += _series(rng, "M3", begin, end, 0, gaps)[0]
    # H4 TOU, a plan change to flat at 13:07 on 30 December.
    accounts.append(_open("H4", "M4", "zhejiang-tou", begin, ytd="1000"))
    change = datetime(2026, 12, 30, 13, 7, tzinfo=tz)
    accounts.append(
        {
            "type": "change_plan",
            "account_id": "H4",
            "plan": "zhejiang-tiered",
            "ts": change.isoformat(),
        }
    )
    readings += _series(rng, "M4", begin, end, 0)[0]
    # H5 TOU, the register rolls over.
    accounts.append(_open("H5", "M5", "zhejiang-tou", begin))
    readings += _series(rng, "M5", begin, end, REGISTER_MAX - 40_000)[0]
    # H6 flat, a meter regression on 2 January rebases the series.
    accounts.append(_open("H6", "M6", "zhejiang-tiered", begin))
    regressed = datetime(2027, 1, 2, 10, 0, tzinfo=tz)
    rows, _ = _series(rng, "M6", begin, regressed, 70_000)
    readings += rows + _series(rng, "M6", regressed, end, 12_000)[0]
    # H7 TOU, its meter replaced at 10:37 on 30 December.
    accounts.append(_open("H7", "M7", "zhejiang-tou", begin, ytd="2000"))
    swap = datetime(2026, 12, 30, 10, 37, tzinfo=tz)
    rows, last = _series(rng, "M7", begin, swap, 30_000)
    accounts.append(
        {
            "type": "replace_meter",
            "account_id": "H7",
            "old_meter_id": "M7",
            "old_final_kwh": _kwh(last + 700),
            "new_meter_id": "N7",
            "new_initial_kwh": "0",
            "ts": swap.isoformat(),
        }
    )
    readings += rows + _series(rng, "N7", swap + timedelta(minutes=8), end, 0)[0]
    # H8 flat, its meter read from the start but opened at 13:20 on 21 December.
    accounts.append(_open("H8", "M8", "zhejiang-tiered", datetime(2026, 12, 21, 13, 20, tzinfo=tz)))
    readings += _series(rng, "M8", begin, end, 900)[0]
    # H9 TOU, closed with a final reading at 16:40 on 5 January.
    accounts.append(_open("H9", "M9", "zhejiang-tou", begin))
    closed = datetime(2027, 1, 5, 16, 40, tzinfo=tz)
    rows, last = _series(rng, "M9", begin, closed, 0)
    accounts.append(
        {
            "type": "close",
            "account_id": "H9",
            "ts": closed.isoformat(),
            "final_kwh": _kwh(last + 1_500),
        }
    )
    readings += rows
    return accounts, readings


def _jsonl(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: datetime.fromisoformat(r["ts"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module", params=["Asia/Shanghai", "Europe/Berlin"])
def billed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    zone = request.param
    base = tmp_path_factory.mktemp("intervals-town")
    inputs = base / "input"
    inputs.mkdir()
    accounts, readings = _town(ZoneInfo(zone))
    _jsonl(inputs / "accounts.jsonl", accounts)
    _jsonl(inputs / "readings.jsonl", readings)
    (inputs / "payments.jsonl").write_text("", encoding="utf-8")
    dsn = f"chdb://{base / 'clickhouse'}"
    env = {**os.environ, "WATTPAY_TIMEZONE": zone}
    subprocess.run(
        [*WATTPAY, "replay", str(inputs), "--clickhouse", dsn, "--quiet"], check=True, env=env
    )
    return dsn, zone


def _read_from_readings(
    store: ClickHouseStore, window: aggregates.Window, data: dict, events: pl.DataFrame
) -> aggregates.Aggregated:
    """`aggregates.aggregated`: every account read from ``readings`` (what is compared)."""
    opening = opening_ytd(events, window.zone)
    rebases = tables.regressions(store)
    return aggregates.aggregated(store, window, data.values(), rebases, opening, REGISTER_MAX)


@pytest.mark.parametrize(
    ("first", "after"),
    [
        (date(2026, 12, 1), date(2027, 1, 1)),
        (date(2027, 1, 1), date(2027, 2, 1)),  # a base of zero: the year starts in it
        (date(2026, 12, 27), date(2027, 1, 4)),  # across 1 January
        (date(2027, 1, 3), date(2027, 1, 9)),  # after the regression: a base from intervals
    ],
)
@pytest.mark.parametrize("override", [None, "other", "zhejiang-tou", "proposed-tou"])
def test_intervals_rate_like_the_readings(billed, first, after, override) -> None:
    dsn, zone = billed
    settings = load_settings(env={})
    data = {**plan_data(settings.rules.plans), PROPOSED.plan_id: PROPOSED}
    if override == "other":
        mapped = {**alt_plans(settings.rules.plans), PROPOSED.plan_id: "zhejiang-tiered"}
    else:
        mapped = None if override is None else dict.fromkeys(data, override)
    window = aggregates.Window(first, after, zone)
    with ClickHouseStore(dsn) as store:
        events = tables.account_events(store)
        rebases = tables.regressions(store)
        assert rebases.height == 1
        expected = _read_from_readings(store, window, data, events)
        found = aggregates.from_intervals(
            store, window, data.values(), rebases, events, REGISTER_MAX
        )
    timeline = plan_timeline(events, mapped)
    keys = ["account_id", "day"]
    rated = daily(aggregates.rated(found, timeline, data)).sort(keys)
    assert rated.equals(daily(aggregates.rated(expected, timeline, data)).sort(keys))
    assert set(rated["account_id"]) >= {"H2", "H3", "H4"}
    if zone == "Asia/Shanghai":
        # Read from intervals: H2, H3 and H6 (its rebase a gap in the parts) as merged parts,
        # H4's parts each on its own (its plan change); the readings give H1 (08:00 inside a
        # part) raw spans.
        assert {"H2", "H3", "H6"} <= set(found.merged["account_id"])
        assert {"H2", "H3"}.isdisjoint(found.raw["account_id"])
        assert "H4" not in set(found.merged["account_id"])
        if first < date(2027, 1, 1):
            assert {"H1", "H4"} <= set(found.raw["account_id"])


def test_a_zone_with_summer_time_reads_readings() -> None:
    assert (
        aggregates._steady_offset(
            aggregates.Window(date(2026, 3, 1), date(2026, 4, 1), "Asia/Shanghai")
        )
        == 8 * 3_600_000_000
    )
    # Berlin changes its offset on 29 March 2026: from January on, not steady.
    assert (
        aggregates._steady_offset(
            aggregates.Window(date(2026, 1, 1), date(2026, 2, 1), "Europe/Berlin")
        )
        == 3_600_000_000
    )
    assert (
        aggregates._steady_offset(
            aggregates.Window(date(2026, 4, 1), date(2026, 5, 1), "Europe/Berlin")
        )
        is None
    )


@pytest.mark.parametrize("billed", ["Asia/Shanghai"], indirect=True)
def test_the_usage_analysis_reads_intervals(billed) -> None:
    """The month's ``alt_charge`` of `wattpay bills` is the alternative plan's daily charges."""
    dsn, zone = billed
    settings = load_settings(env={})
    data = plan_data(settings.rules.plans)
    window = aggregates.Window(date(2026, 12, 1), date(2027, 1, 1), zone)
    with ClickHouseStore(dsn) as store:
        events = tables.account_events(store)
        expected = _read_from_readings(store, window, data, events)
    alt = daily(
        aggregates.rated(expected, plan_timeline(events, alt_plans(settings.rules.plans)), data)
    )
    totals = dict(alt.group_by("account_id").agg(pl.col("charge").sum()).iter_rows())
    out = Path(dsn.removeprefix("chdb://")).parent / "jobs"
    billing = "bills --month 2026-12 --quiet --no-documents".split()
    subprocess.run([*WATTPAY, *billing, "--clickhouse", dsn, "--out", str(out)], check=True)
    with ClickHouseStore(dsn) as store:
        _, rows = store.query("SELECT account_id, alt_charge FROM usage_analysis FINAL")
    found = {aid: int(charge.scaleb(2)) for aid, charge in rows}
    assert found == {aid: totals.get(aid, 0) for aid in found}
    assert len(found) == 9 and any(found.values())
