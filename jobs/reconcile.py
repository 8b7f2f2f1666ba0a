"""Reconciliation (SPEC S15.5): re-rate the accepted readings in batch, compare with daily_usage.

`recompute` runs the independent batch rater (`jobs.rater`, `jobs.rating`) on readings read
into polars; `recompute_years` runs it on `jobs.aggregates`' input, a calendar year at a time
(what `wattpay reconcile` uses: the same figures, most spans summed in ClickHouse); `differences`
lists every ``daily_usage`` row whose kWh, peak/valley, tier split, charge or ytd differs from
it, and every day the readings charge that has no row where one is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import polars as pl

from jobs import aggregates, tables
from jobs.rater import opening_ytd, plan_data, plan_timeline, spans
from jobs.rating import cut_points, daily, parts, rate
from store.clickhouse import ClickHouseStore

COMPARED = (
    "kwh",
    "kwh_peak",
    "kwh_valley",
    "kwh_tier1",
    "kwh_tier2",
    "kwh_tier3",
    "charge",
    "ytd_kwh",
)


@dataclass(frozen=True)
class RatingInputs:
    """What the batch rater reads."""

    readings: pl.DataFrame
    regressions: pl.DataFrame
    account_events: pl.DataFrame


def read_rating_inputs(store: ClickHouseStore, zone: str) -> RatingInputs:
    """Accepted readings, regression rebases and account events from ClickHouse."""
    return RatingInputs(
        tables.readings(store, zone), tables.regressions(store), tables.account_events(store)
    )


def recompute(
    inputs: RatingInputs,
    plans: Mapping[str, object],
    zone: str,
    register_max_milli: int,
    override: Mapping[str, str] | None = None,
    within: tuple[int, int] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(daily totals, opening ytd bases) re-rated from the readings; ``override`` maps plans.

    With ``within`` (epoch µs, [start, end)), only the spans that overlap it are rated: the
    totals of the days inside it are exact when it starts at a local 1 January, where the
    tier cumulative starts again (other days may miss parts).
    """
    data = plan_data(plans)
    timeline = plan_timeline(inputs.account_events, override)
    bases = opening_ytd(inputs.account_events, zone)
    span_frame = spans(inputs.readings, inputs.regressions, register_max_milli)
    if within is not None:
        start, end = within
        span_frame = span_frame.filter((pl.col("t1") > start) & (pl.col("t0") < end))
    cuts = cut_points(span_frame, timeline, data, zone)
    rated = rate(parts(span_frame, cuts), timeline, bases, data, zone)
    return daily(rated), bases


def recompute_years(
    store: ClickHouseStore, plans: Mapping[str, object], zone: str, register_max_milli: int
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """`recompute`'s (daily totals, opening ytd bases) and the number of accepted readings.

    Every calendar year that has readings is rated from `jobs.aggregates`: a year starts at
    its local 1 January, where the tier cumulative starts again, so its base is the opening
    ``ytd_kwh`` alone and each year's days are exact.
    """
    if not tables.ZONE_NAME.fullmatch(zone):
        raise ValueError(f"not a zone name: {zone!r}")
    _, rows = store.query(
        f"SELECT count(), toYear(min(toTimeZone(ts, '{zone}'))),"
        f" toYear(max(toTimeZone(ts, '{zone}'))) FROM readings FINAL"
    )
    count, first, last = rows[0]
    if not count:
        batch, bases = recompute(read_rating_inputs(store, zone), plans, zone, register_max_milli)
        return batch, bases, 0
    events, rebases = tables.account_events(store), tables.regressions(store)
    bases = opening_ytd(events, zone)
    data = plan_data(plans)
    timeline = plan_timeline(events, None)
    days = []
    for year in range(int(first), int(last) + 1):
        window = aggregates.Window(date(year, 1, 1), date(year + 1, 1, 1), zone)
        found = aggregates.aggregated(
            store, window, data.values(), rebases, bases, register_max_milli
        )
        days.append(daily(aggregates.rated(found, timeline, data)))
    return pl.concat(days), bases, int(count)


def differences(
    stream: pl.DataFrame,
    batch: pl.DataFrame,
    bases: pl.DataFrame,
    day_from: date | None = None,
    day_to: date | None = None,
) -> pl.DataFrame:
    """Rows (account_id, day, column, stream, batch) where the two disagree.

    A day without consumption in the batch has 0 kWh and the ytd carried from the last day
    with consumption in the same calendar year (or the opening ``ytd_kwh``); a batch day with
    consumption and no ``daily_usage`` row counts when a later row of the account exists.
    """
    keys = ["account_id", "day"]
    carried = batch.select("account_id", "day", carried="ytd_kwh").sort("day")
    stream = stream.with_columns(year=pl.col("day").dt.year()).sort("day")
    expected = (
        stream.select("account_id", "day", "year")
        .join_asof(
            carried.with_columns(cyear=pl.col("day").dt.year(), cday=pl.col("day")),
            on="day",
            by="account_id",
            strategy="backward",
            check_sortedness=False,
        )
        .join(bases, on=["account_id", "year"], how="left")
        .with_columns(
            ytd_kwh=pl.when(pl.col("cyear") == pl.col("year"))
            .then(pl.col("carried"))
            .otherwise(pl.col("base").fill_null(0))
        )
        .select("account_id", "day", "ytd_kwh")
        .join(batch.drop("ytd_kwh", "cost"), on=keys, how="left")
        .with_columns(pl.col(c).fill_null(0) for c in COMPARED if c != "ytd_kwh")
    )
    last_row = stream.group_by("account_id").agg(last=pl.col("day").max())
    missing = (
        batch.filter(pl.col("kwh") > 0)
        .join(stream.select(keys), on=keys, how="anti")
        .join(last_row, on="account_id", how="left")
        .filter(pl.col("last").is_not_null() & (pl.col("day") < pl.col("last")))
    )
    if day_from is not None:
        stream = stream.filter(pl.col("day") >= day_from)
        missing = missing.filter(pl.col("day") >= day_from)
    if day_to is not None:
        stream = stream.filter(pl.col("day") <= day_to)
        missing = missing.filter(pl.col("day") <= day_to)
    joined = stream.select(*keys, *COMPARED).join(expected, on=keys, suffix="_batch")
    found = [
        joined.filter(pl.col(c) != pl.col(f"{c}_batch")).select(
            *keys, column=pl.lit(c), stream=pl.col(c), batch=pl.col(f"{c}_batch")
        )
        for c in COMPARED
    ]
    found.append(
        missing.select(*keys, column=pl.lit("row"), stream=pl.lit(None, pl.Int64), batch="kwh")
    )
    return pl.concat(found).sort(keys)
