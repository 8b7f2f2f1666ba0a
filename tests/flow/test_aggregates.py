"""The pre-aggregated rater input (jobs.aggregates) rates exactly like the raw polars path.

A few households written straight into a real embedded ClickHouse, with everything that
makes a span need cutting: irregular readings, gaps across midnight and TOU boundaries, a
plan change mid-day, a rollover, a meter regression, a meter replacement, readings before
the account opens, 1 January, tier crossings inside a day, and a proposal whose peak runs
09:00–21:00. The raw path rates every span from 1 January (as the jobs did before); the
aggregated one rates the window from ClickHouse's sums and bases. Days, tiers, money and the
usage profile must be the same integers.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from config.settings import load_settings
from jobs import aggregates, tables
from jobs.rater import PlanData, opening_ytd, plan_data, plan_timeline, spans
from jobs.rating import cut_points, daily, parts, rate
from jobs.whatif import PEAK_FROM_US, PEAK_TO_US, _profiles, _tiers
from store.clickhouse import ClickHouseStore

REGISTER_MAX = 1_000_000_000  # milli: the default 1,000,000 kWh register
_READING = ("meter_id", "account_id", "ts", "energy_kwh", "source")
PROPOSED = PlanData(
    "proposed-tou",
    (2_400_000, 4_200_000),
    {"peak": (5980, 6480, 8980), "valley": (2680, 3180, 5680)},
    ((time(0), "valley"), (time(9), "peak"), (time(21), "valley")),
)


def _event(account: str, ts: datetime, kind: str, meter: str, plan: str, **body: str) -> dict:
    payload = json.dumps({"type": kind, **body})
    return {
        "event_id": f"{account}:{kind}@{ts.isoformat()}",
        "account_id": account,
        "ts": ts,
        "type": kind,
        "meter_id": meter,
        "plan": plan,
        "payload": payload,
    }


def _reading(meter: str, account: str, ts: datetime, milli: int) -> dict:
    return {
        "meter_id": meter,
        "account_id": account,
        "ts": ts,
        "energy_kwh": Decimal(milli).scaleb(-3),
        "source": "",
    }


def _series(
    rng: random.Random,
    meter: str,
    account: str,
    start: datetime,
    end: datetime,
    register: int,
    odd: float = 0.05,
) -> tuple[list[dict], int]:
    """Quarter-hour readings, an ``odd`` share of irregular steps and gaps; the register wraps."""
    rows, ts = [], start
    while ts < end:
        rows.append(_reading(meter, account, ts, register))
        step = rng.choice([7, 23, 40, 95, 170, 610]) if rng.random() < odd else 15
        register = (register + rng.randint(0, 90) * step // 15 * 10) % REGISTER_MAX
        ts += timedelta(minutes=step)
    return rows, register


def _town(store: ClickHouseStore, zone: str) -> None:
    """Six households from 20 October (before Europe's autumn clock change) to 10 January."""
    tz = ZoneInfo(zone)
    rng = random.Random(7)
    begin, end = datetime(2026, 10, 20, tzinfo=tz), datetime(2027, 1, 10, tzinfo=tz)
    events, readings = [], []
    # H1 flat, opening 4 kWh under the first tier bound: crosses it inside a day.
    events.append(_event("H1", begin, "open", "M1", "zhejiang-tiered", ytd_kwh="2756"))
    readings += _series(rng, "M1", "H1", begin, end, 5_000_000)[0]
    # H2 TOU, a plan change at 13:07 on 30 December.
    events.append(_event("H2", begin, "open", "M2", "zhejiang-tou", ytd_kwh="4790"))
    events.append(
        _event(
            "H2", datetime(2026, 12, 30, 13, 7, tzinfo=tz), "change_plan", "M2", "zhejiang-tiered"
        )
    )
    readings += _series(rng, "M2", "H2", begin, end, 0)[0]
    # H3 TOU, the register rolls over.
    events.append(_event("H3", begin, "open", "M3", "zhejiang-tou", ytd_kwh="100"))
    readings += _series(rng, "M3", "H3", begin, end, REGISTER_MAX - 40_000)[0]
    # H4 flat, a meter regression on 2 January rebases the series.
    events.append(_event("H4", begin, "open", "M4", "zhejiang-tiered"))
    rows = _series(rng, "M4", "H4", begin, end, 70_000)[0]
    readings += rows
    regressed = datetime(2027, 1, 2, 10, 5, tzinfo=tz)
    payload = {"meter_id": "M4", "ts": regressed.isoformat(), "energy_kwh": "12.000"}
    rejected = {
        "rejection_id": "r1",
        "topic": "wattpay.readings",
        "key": "M4",
        "payload": json.dumps(payload),
        "payload_base64": 0,
        "reason": "meter_regression",
        "detail": "",
        "received_at": regressed,
    }
    readings = [r for r in readings if not (r["meter_id"] == "M4" and r["ts"] > regressed)]
    readings += _series(rng, "M4", "H4", regressed + timedelta(minutes=10), end, 12_500)[0]
    # H5 TOU, its meter replaced at 10:37 on 30 December.
    swap = datetime(2026, 12, 30, 10, 37, tzinfo=tz)
    events.append(_event("H5", begin, "open", "M5", "zhejiang-tou", ytd_kwh="2000"))
    events.append(_event("H5", swap, "replace_meter", "N5", ""))
    readings += _series(rng, "M5", "H5", begin, swap + timedelta(minutes=1), 30_000)[0]
    readings += _series(rng, "N5", "H5", swap, end, 0)[0]
    # H6 flat, regular readings from 20 October but opened at 13:20 on 21 December.
    events.append(
        _event("H6", datetime(2026, 12, 21, 13, 20, tzinfo=tz), "open", "M6", "zhejiang-tiered")
    )
    readings += _series(rng, "M6", "H6", begin, end, 900, odd=0)[0]
    store.insert_rows("account_events", events)
    store.insert_rows("readings", readings)
    store.insert_rows("rejected", [rejected])


@pytest.fixture(scope="module", params=["Asia/Shanghai", "Europe/Berlin", "America/Santiago"])
def town(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    zone = request.param
    directory: Path = tmp_path_factory.mktemp("aggregates")
    dsn = f"chdb://{directory}"
    with ClickHouseStore(dsn) as store:  # one embedded ClickHouse open at a time
        store.migrate()
        _town(store, zone)
    return dsn, zone


def _raw(store, zone, data, override, window) -> pl.DataFrame:
    """The polars path over every span from 1 January, kept to the window's days."""
    events = tables.account_events(store)
    timeline = plan_timeline(events, override)
    span_frame = spans(tables.readings(store, zone), tables.regressions(store), REGISTER_MAX)
    span_frame = span_frame.filter((pl.col("t1") > window.new_year) & (pl.col("t0") < window.end))
    rated = rate(
        parts(span_frame, cut_points(span_frame, timeline, data, zone)),
        timeline,
        opening_ytd(events, zone),
        data,
        zone,
    )
    return rated.filter((pl.col("day") >= window.first) & (pl.col("day") < window.after))


def _same(raw: pl.DataFrame, merged: pl.DataFrame) -> None:
    keys = ["account_id", "day"]
    assert daily(raw).sort(keys).equals(daily(merged).sort(keys))
    assert _tiers(raw, "x").equals(_tiers(merged, "x"))
    assert _profiles(raw).sort("account_id").equals(_profiles(merged).sort("account_id"))


@pytest.mark.parametrize(
    ("first", "after"),
    [
        (date(2026, 12, 1), date(2027, 2, 1)),  # across 1 January
        (date(2027, 1, 1), date(2027, 2, 1)),
        (date(2026, 12, 27), date(2027, 1, 4)),  # from a day inside the data: a base
        (date(2027, 1, 3), date(2027, 1, 9)),  # after the regression and the year's start
        (date(2026, 10, 1), date(2026, 11, 1)),  # 25 October: 25 hours in Europe/Berlin
        (date(2026, 10, 25), date(2026, 10, 27)),
    ],
)
@pytest.mark.parametrize("override", [None, "zhejiang-tou", "proposed-tou", "zhejiang-tiered"])
def test_aggregated_rates_like_the_raw_path(town, first, after, override) -> None:
    dsn, zone = town
    with ClickHouseStore(dsn) as store:
        settings = load_settings(env={})
        data = {**plan_data(settings.rules.plans), PROPOSED.plan_id: PROPOSED}
        mapped = None if override is None else dict.fromkeys(data, override)
        window = aggregates.Window(first, after, zone)
        events = tables.account_events(store)
        found = aggregates.aggregated(
            store,
            window,
            data.values(),
            tables.regressions(store),
            opening_ytd(events, zone),
            REGISTER_MAX,
            extra_clocks=(PEAK_FROM_US, PEAK_TO_US),
        )
        assert found.raw.height
        # Santiago skips the midnight of 6 September 2026: that year's windows go raw entirely.
        assert bool(found.merged.height) == (zone != "America/Santiago" or first.year == 2027)
        merged = aggregates.rated(found, plan_timeline(events, mapped), data)
        raw = _raw(store, zone, data, mapped, window)
        assert raw.height > merged.height or not found.merged.height
        _same(raw, merged)


def test_a_range_of_accounts_alone(town) -> None:
    dsn, zone = town
    with ClickHouseStore(dsn) as store:
        data = plan_data(load_settings(env={}).rules.plans)
        window = aggregates.Window(date(2026, 12, 1), date(2027, 2, 1), zone)
        events = tables.account_events(store)
        bases = opening_ytd(events, zone)
        rebases = tables.regressions(store)
        whole = aggregates.aggregated(store, window, data.values(), rebases, bases, REGISTER_MAX)
        some = aggregates.aggregated(
            store, window, data.values(), rebases, bases, REGISTER_MAX, ("H2", "H4")
        )
        timeline = plan_timeline(events, None)
        picked = pl.DataFrame({"account_id": ["H2", "H3", "H4"]})
        expected = daily(aggregates.rated(whole.only(picked), timeline, data))
        found = daily(aggregates.rated(some, timeline, data))
        assert found.sort("account_id", "day").equals(expected.sort("account_id", "day"))
        assert set(found["account_id"]) == {"H2", "H3", "H4"}


def test_before_sums_the_cut_parts_of_the_year() -> None:
    # A span from 23:00 on 31 December to 02:00 on 3 January local: the parts of 1 and
    # 2 January, cumulative-rounded at each midnight, as polars cuts them.
    zone = "Asia/Shanghai"
    window = aggregates.Window(date(2027, 1, 3), date(2027, 1, 4), zone)
    hour = 3_600_000_000
    t0 = tables.midnight_us(date(2026, 12, 31), zone) + 23 * hour
    t1 = window.start + 2 * hour
    span = pl.DataFrame({"span": [0], "account_id": ["A"], "t0": [t0], "t1": [t1], "delta": [1001]})
    span = span.with_columns(pl.col("span").cast(pl.UInt32))
    cuts = pl.DataFrame(
        {
            "span": [0, 0, 0],
            "c": [window.new_year, tables.midnight_us(date(2027, 1, 2), zone), window.start],
        }
    ).with_columns(pl.col("span").cast(pl.UInt32))
    pieces = parts(span, cuts)
    expected = pieces.filter(
        (pl.col("start") >= window.new_year) & (pl.col("start") < window.start)
    )
    found = aggregates._before(span, window.new_year, window.start)
    assert found["before"].to_list() == [expected["milli"].sum()]


def _polars_profile(
    intervals: pl.DataFrame, zone: str
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Hourly sums and nightly minimum watts the way the usage analysis computed them in polars."""
    local = tables.with_local(intervals, "us", zone)
    hourly: dict[str, list[int]] = {}
    sums = local.group_by("account_id", hour=pl.col("local").dt.hour()).agg(pl.col("milli").sum())
    for aid, hour, milli in sums.iter_rows():
        hourly.setdefault(aid, [0] * 24)[hour] = milli
    night = (
        local.filter(pl.col("local").dt.hour() < 6)
        .group_by("account_id", "us", "end_us", "local")
        .agg(pl.col("milli").sum())
        .with_columns(
            day=pl.col("local").dt.date(),
            watts=(2 * pl.col("milli") * 3_600_000_000 + (pl.col("end_us") - pl.col("us")))
            // (2 * (pl.col("end_us") - pl.col("us"))),
        )
        .group_by("account_id", "day")
        .agg(pl.col("watts").min())
    )
    nights: dict[str, list[int]] = {}
    for aid, _, watts in night.sort("account_id", "day").iter_rows():
        nights.setdefault(aid, []).append(watts)
    return hourly, nights


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin"])
def test_interval_sums_in_clickhouse_equal_the_polars_ones(zone: str, tmp_path: Path) -> None:
    rng = random.Random(3)
    tz = ZoneInfo(zone)
    rows = []
    for n in range(4):
        ts = datetime(2026, 10, 20, tzinfo=tz) + timedelta(minutes=7 * n)
        while ts < datetime(2026, 11, 3, tzinfo=tz):
            step = timedelta(minutes=rng.choice([15, 15, 15, 4, 61]))
            for tier in (1, 2) if rng.random() < 0.1 else (1,):  # a tier crossing: two rows
                rows.append(
                    {
                        "account_id": f"H{n}",
                        "meter_id": f"M{n}",
                        "start": ts,
                        "end": ts + step,
                        "kwh": Decimal(rng.randint(0, 900)).scaleb(-3),
                        "period": "flat",
                        "tier": tier,
                        "price": Decimal("0.5380"),
                        "cost": Decimal(0),
                    }
                )
            ts += step
    first, after = date(2026, 10, 21), date(2026, 11, 2)
    with ClickHouseStore(f"chdb://{tmp_path}") as store:
        store.migrate()
        store.insert_rows("intervals", rows)
        # The rows the job read before: intervals starting on the window's local days (in the
        # zone, not the column's), one row each.
        _, found = store.query(
            "SELECT account_id, toUnixTimestamp64Micro(`start`), toUnixTimestamp64Micro(`end`),"
            " toInt64(kwh * 1000) FROM intervals FINAL"
            " WHERE toDate(toTimeZone(`start`, {zone:String})) >= {a:Date}"
            " AND toDate(toTimeZone(`start`, {zone:String})) < {b:Date}",
            {"a": first, "b": after, "zone": zone},
        )
        hours = tables.interval_hours(store, first, after, zone)
        nights = tables.interval_nights(store, first, after, zone)
    frame = pl.DataFrame(found, schema=["account_id", "us", "end_us", "milli"], orient="row").cast(
        {"us": pl.Int64, "end_us": pl.Int64, "milli": pl.Int64}
    )
    hourly, night_watts = _polars_profile(frame, zone)
    got_hourly: dict[str, list[int]] = {}
    for aid, hour, milli in hours.iter_rows():
        got_hourly.setdefault(aid, [0] * 24)[hour] = milli
    got_nights: dict[str, list[int]] = {}
    for aid, _, watts in nights.sort("account_id", "day").iter_rows():
        got_nights.setdefault(aid, []).append(watts)
    assert got_hourly == hourly and len(hourly) == 4
    assert got_nights == night_watts and all(len(w) >= 12 for w in night_watts.values())


def test_a_reading_written_twice_counts_once(tmp_path: Path) -> None:
    # A replay writes the same readings again (another part of the table until a merge):
    # the spans, the rebased accounts' readings and the bases must not count them twice.
    zone = "Europe/Berlin"
    with ClickHouseStore(f"chdb://{tmp_path}") as store:
        store.migrate()
        _town(store, zone)
        data = plan_data(load_settings(env={}).rules.plans)
        window = aggregates.Window(date(2026, 12, 27), date(2027, 1, 4), zone)
        events = tables.account_events(store)

        def found() -> aggregates.Aggregated:
            return aggregates.aggregated(
                store,
                window,
                data.values(),
                tables.regressions(store),
                opening_ytd(events, zone),
                REGISTER_MAX,
            )

        once = found()
        rebased = aggregates._readings_of(store, ["H4", "H5"])
        _, rows = store.query(
            "SELECT meter_id, account_id, ts, energy_kwh, source FROM readings"
            " WHERE account_id IN ('H1', 'H4') ORDER BY meter_id, ts"
        )
        store.insert_rows("readings", [dict(zip(_READING, row, strict=True)) for row in rows])
        _, (parts,) = store.query(
            "SELECT count() FROM system.parts WHERE table = 'readings' AND active"
        )
        assert parts[0] >= 2
        twice = found()
        keys = ["account_id", "t0"]
        assert twice.raw.sort(keys).equals(once.raw.sort(keys))
        assert twice.merged.sort("account_id", "start").equals(
            once.merged.sort("account_id", "start")
        )
        assert twice.bases.sort("account_id", "year").equals(once.bases.sort("account_id", "year"))
        again = aggregates._readings_of(store, ["H4", "H5"])
        assert again.sort("meter_id", "us").equals(rebased.sort("meter_id", "us"))


def test_rebased_readings_are_every_reading_of_the_accounts(town) -> None:
    # Read through the meters the accounts' events name (H5's two meters, H4's rebase):
    # the same rows as a filter on every reading's account.
    dsn, _ = town
    with ClickHouseStore(dsn) as store:
        found = aggregates._readings_of(store, ["H4", "H5", "H6"])
        _, rows = store.query(
            "SELECT account_id, meter_id, toUnixTimestamp64Micro(ts), toInt64(energy_kwh * 1000)"
            " FROM readings FINAL WHERE account_id IN ('H4', 'H5', 'H6')"
        )
    assert set(found["meter_id"]) == {"M4", "M5", "N5", "M6"}
    assert sorted(found.iter_rows()) == sorted(rows)
