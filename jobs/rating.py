"""Batch apportioning and rating of spans into parts and days (S4, S14.7), in polars.

Independent of the stream's code: see `jobs.rater` for the inputs and units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from jobs.rater import TIERS, PlanData, _plan_tables, sorted_by
from jobs.tables import local_ts

BY_SPAN = "span"


def _local_days(frame: pl.DataFrame, columns: Sequence[str], zone: str) -> pl.DataFrame:
    """Each distinct instant in ``columns`` (as ``us``) with its local day, year and clock.

    The readings share a few thousand instants, so the zone's rules run once per instant
    rather than once per row.
    """
    local = local_ts("us", zone)
    instants = pl.concat([frame.select(us=pl.col(c)) for c in columns]).unique()
    return instants.select(
        "us",
        day=local.dt.date(),
        year=local.dt.year(),
        clock=(local - local.dt.truncate("1d")).dt.total_microseconds(),
    )


def _with_local(
    frame: pl.DataFrame, local: pl.DataFrame, column: str, **names: str
) -> pl.DataFrame:
    """``frame`` with the local fields of ``column``'s instants, named ``field=name``."""
    picked = local.select(
        pl.col("us").alias(column), *(pl.col(f).alias(n) for f, n in names.items())
    )
    return frame.join(picked, on=column, how="left", maintain_order="left")


def _with_tariff(frame: pl.DataFrame, periods: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each part's period, prices and tier bounds, found once per (plan, clock)."""
    found = (
        frame.select("plan", "clock")
        .unique()
        .sort("clock")
        .join_asof(periods, on="clock", by="plan", strategy="backward", check_sortedness=False)
        .join(prices, on=["plan", "period"], how="left")
    )
    return frame.join(found, on=["plan", "clock"], how="left", maintain_order="left")


def cut_points(
    spans: pl.DataFrame, timeline: pl.DataFrame, plans: Mapping[str, PlanData], zone: str
) -> pl.DataFrame:
    """(span, c): the instants strictly inside each span where it is cut.

    Local midnights always; plan changes; and the period starts of the TOU plan in force.
    """
    _, _, tou_cuts = _plan_tables(plans)
    clocks = sorted({0, *tou_cuts["clock"].to_list()})
    local = _local_days(spans, ("t0", "t1"), zone)
    ends = _with_local(spans, local, "t0", day="day0", clock="tod0")
    ends = _with_local(ends, local, "t1", day="day1", clock="tod1")
    tod0, tod1 = pl.col("tod0"), pl.col("tod1")
    crosses = pl.col("day0") != pl.col("day1")
    for clock in clocks[1:]:
        crosses = crosses | ((tod0 < clock) & (tod1 > clock))
    candidates = (
        ends.filter(crosses)
        .select(BY_SPAN, "account_id", "t0", "t1", d=pl.date_ranges("day0", "day1"))
        .explode("d")
        .join(pl.DataFrame({"clock": clocks}, schema={"clock": pl.Int64}), how="cross")
        .with_columns(
            c=(pl.col("d").cast(pl.Datetime("us")) + pl.duration(microseconds=pl.col("clock")))
            .dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
            .dt.epoch("us")
        )
        .filter((pl.col("c") > pl.col("t0")) & (pl.col("c") < pl.col("t1")))
        .sort("c")
        .join_asof(
            timeline.rename({"us": "c"}),
            on="c",
            by="account_id",
            strategy="backward",
            check_sortedness=False,
        )
        .join(tou_cuts.with_columns(tou=pl.lit(True)), on=["plan", "clock"], how="left")
        .filter((pl.col("clock") == 0) | pl.col("tou").fill_null(False))
        .select(BY_SPAN, "c")
    )
    several = timeline.group_by("account_id").len().filter(pl.col("len") > 1).select("account_id")
    changes = (
        spans.join(several, on="account_id", how="semi")
        .join(timeline, on="account_id")
        .filter((pl.col("us") > pl.col("t0")) & (pl.col("us") < pl.col("t1")))
        .select(BY_SPAN, c="us")
    )
    return pl.concat([candidates, changes]).unique()


def parts(spans: pl.DataFrame, cuts: pl.DataFrame) -> pl.DataFrame:
    """Apportion each span at its cuts by cumulative rounding (S4): account_id, start, end, milli.

    The energy up to cut i is round_half_up(Δ × (c_i − t0) ÷ (t1 − t0)) thousandths; each
    part is the difference of consecutive cumulative values. A span without cuts is one part.
    """
    cut = spans.join(cuts.select(BY_SPAN).unique(), on=BY_SPAN, how="semi")
    whole = spans.join(cut.select(BY_SPAN), on=BY_SPAN, how="anti").select(
        BY_SPAN, "account_id", start="t0", end="t1", milli="delta"
    )
    return (
        pl.concat([whole, _apportioned(cut, cuts)])
        .sort(BY_SPAN, "end")
        .select("account_id", "start", "end", "milli")
    )


def _apportioned(spans: pl.DataFrame, cuts: pl.DataFrame) -> pl.DataFrame:
    """The parts of spans that have cuts, with their span."""
    ends = spans.select(BY_SPAN, c="t1")
    rows = pl.concat([cuts, ends]).join(spans, on=BY_SPAN).sort(BY_SPAN, "c")
    wide = pl.Int128
    elapsed = (pl.col("c") - pl.col("t0")).cast(wide)
    total = (pl.col("t1") - pl.col("t0")).cast(wide)
    cumulative = (
        pl.when(pl.col("c") == pl.col("t1"))
        .then(pl.col("delta").cast(wide))
        .otherwise((2 * pl.col("delta").cast(wide) * elapsed + total) // (2 * total))
        .cast(pl.Int64)
    )
    return (
        rows.with_columns(cum=cumulative)
        .with_columns(
            start=pl.col("c").shift(1).over(BY_SPAN).fill_null(pl.col("t0")),
            milli=pl.col("cum") - pl.col("cum").shift(1).over(BY_SPAN).fill_null(0),
        )
        .select(BY_SPAN, "account_id", "start", end="c", milli="milli")
    )


def rate(
    parts_frame: pl.DataFrame,
    timeline: pl.DataFrame,
    bases: pl.DataFrame,
    plans: Mapping[str, PlanData],
    zone: str,
) -> pl.DataFrame:
    """Price every part: plan in force at its start, period by its start's clock, tier split.

    Adds day, year, plan, period, c1 (calendar-year cumulative after it), q1..q3 (kWh per
    tier) and cost (1/10^7 yuan).
    """
    periods, prices, _ = _plan_tables(plans)
    local = _local_days(parts_frame, ("start",), zone)
    # In account and time order from the start: every step below keeps the order, and the
    # plan timeline needs it only within each account.
    rated = (
        sorted_by(parts_frame, ["account_id"], "start")
        .join_asof(
            timeline.rename({"us": "start"}),
            on="start",
            by="account_id",
            strategy="backward",
            check_sortedness=False,
        )
        .pipe(_with_local, local, "start", day="day", year="year", clock="clock")
        .pipe(_with_tariff, periods, prices)
        .join(bases, on=["account_id", "year"], how="left", maintain_order="left")
        .with_columns(
            c1=pl.col("base").fill_null(0) + pl.col("milli").cum_sum().over("account_id", "year")
        )
        .with_columns(c0=pl.col("c1") - pl.col("milli"))
    )
    lower = [pl.lit(0), *(pl.col(f"b{k}") for k in range(1, TIERS))]
    upper = [*(pl.col(f"b{k}") for k in range(1, TIERS)), None]
    quantities = []
    for k in range(TIERS):
        top = pl.col("c1") if upper[k] is None else pl.min_horizontal(pl.col("c1"), upper[k])
        quantities.append(
            (top - pl.max_horizontal(pl.col("c0"), lower[k])).clip(lower_bound=0).alias(f"q{k + 1}")
        )
    rated = rated.with_columns(quantities)
    cost = sum(pl.col(f"q{k}") * pl.col(f"p{k}") for k in range(1, TIERS + 1))
    return rated.with_columns(cost=cost)


def daily(rated: pl.DataFrame) -> pl.DataFrame:
    """Per account × local day: kWh, peak, valley, tiers, charge (fen, rounded once), ytd."""
    used = ("account_id", "day", "start", "milli", "period", "q1", "q2", "q3", "cost", "c1")
    return (
        sorted_by(rated.select(used), ["account_id"], "start")
        .group_by("account_id", "day")
        .agg(
            kwh=pl.col("milli").sum(),
            kwh_peak=pl.col("milli").filter(pl.col("period") == "peak").sum(),
            kwh_valley=pl.col("milli").filter(pl.col("period") == "valley").sum(),
            kwh_tier1=pl.col("q1").sum(),
            kwh_tier2=pl.col("q2").sum(),
            kwh_tier3=pl.col("q3").sum(),
            cost=pl.col("cost").sum(),
            ytd_kwh=pl.col("c1").last(),
        )
        .with_columns(charge=(2 * pl.col("cost") + 100_000) // 200_000)
    )
