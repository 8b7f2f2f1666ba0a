"""The batch rater: S4 and S14 rating re-implemented in polars, independent of `billing/`.

From the accepted readings (with the rebases of ``meter_regression`` rejections) and the
applied account events it rebuilds every rated part: spans between consecutive readings of
an account's meter, cut at local midnights, plan changes and time-of-use boundaries with
cumulative rounding, split at tier bounds on the calendar-year cumulative, priced exactly.
Energy is in thousandths of a kWh, prices in 1/10000 yuan, costs in 1/10^7 yuan (integers).
Plans are read as data (tier bounds, price table, period start clocks) from the settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from decimal import Decimal

import polars as pl

from jobs.tables import local_ts

TIERS = 3
US_PER_DAY = 86_400_000_000
NO_BOUND = 2**62
_RANK = "_rank"


@dataclass(frozen=True)
class PlanData:
    """A tariff as data: tier bounds (milli), prices per period (1/10^4 yuan), period starts."""

    plan_id: str
    bounds: tuple[int, ...]
    prices: Mapping[str, tuple[int, ...]]
    periods: tuple[tuple[time, str], ...]  # empty for a flat plan

    @property
    def is_tou(self) -> bool:
        """True when the price depends on the time of day."""
        return bool(self.periods)


def plan_data(plans: Mapping[str, object]) -> dict[str, PlanData]:
    """PlanData from the configured plan catalog (its fields only; no rating code is called)."""
    found = {}
    for plan_id, plan in plans.items():
        bounds = tuple(int(Decimal(b) * 1000) for b in plan.tier_bounds)  # type: ignore[attr-defined]
        prices = {
            name: tuple(int(Decimal(p) * 10_000) for p in row)
            for name, row in plan.prices.items()  # type: ignore[attr-defined]
        }
        periods = tuple((p.start, p.name) for p in plan.periods)  # type: ignore[attr-defined]
        if len(bounds) >= TIERS:
            raise ValueError(f"plan {plan_id}: at most {TIERS} tiers are supported")
        found[plan_id] = PlanData(plan_id, bounds, prices, periods)
    return found


def sorted_by(frame: pl.DataFrame, names: Sequence[str], then: str) -> pl.DataFrame:
    """``frame`` sorted by ``names``, then ``then``: the same order as ``frame.sort``.

    The names (account and meter ids) are compared through the rank of their distinct
    values, so the millions of rows sort on integers; sorting them on strings is slower.
    """
    keys = frame.select(names).unique().sort(names).with_row_index(_RANK)
    return frame.join(keys, on=list(names), how="left").sort(_RANK, then).drop(_RANK)


def _clock_us(clock: time) -> int:
    return ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 + clock.microsecond


def _plan_tables(plans: Mapping[str, PlanData]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(periods by start clock, prices and bounds per plan × period, TOU boundary clocks)."""
    periods: dict[str, list] = {"plan": [], "clock": [], "period": []}
    prices: dict[str, list] = {"plan": [], "period": []}
    prices.update({f"p{k}": [] for k in range(1, TIERS + 1)})
    prices.update({f"b{k}": [] for k in range(1, TIERS)})
    cuts: dict[str, list] = {"plan": [], "clock": []}
    for plan in plans.values():
        entries = sorted((_clock_us(start), name) for start, name in plan.periods) or [(0, "flat")]
        if entries[0][0] != 0:
            entries.insert(0, (0, entries[-1][1]))  # before the first start: the last period
        for clock, name in entries:
            periods["plan"].append(plan.plan_id)
            periods["clock"].append(clock)
            periods["period"].append(name)
        for start, _ in plan.periods:
            cuts["plan"].append(plan.plan_id)
            cuts["clock"].append(_clock_us(start))
        bounds = [*plan.bounds, *([NO_BOUND] * (TIERS - 1 - len(plan.bounds)))]
        for name, row in plan.prices.items():
            prices["plan"].append(plan.plan_id)
            prices["period"].append(name)
            padded = [*row, *([row[-1]] * (TIERS - len(row)))]
            for k in range(TIERS):
                prices[f"p{k + 1}"].append(padded[k])
            for k in range(TIERS - 1):
                prices[f"b{k + 1}"].append(bounds[k])
    return (
        pl.DataFrame(periods, schema={"plan": pl.String, "clock": pl.Int64, "period": pl.String}),
        pl.DataFrame(prices).with_columns(pl.col("^[pb][0-9]$").cast(pl.Int64)),
        pl.DataFrame(cuts, schema={"plan": pl.String, "clock": pl.Int64}).unique(),
    )


def plan_timeline(events: pl.DataFrame, override: Mapping[str, str] | None) -> pl.DataFrame:
    """(account_id, us, plan) from ``open`` and ``change_plan``, in force from ``us`` on."""
    timeline = events.filter(pl.col("type").is_in(["open", "change_plan"])).select(
        "account_id", "us", "plan"
    )
    if override:
        timeline = timeline.with_columns(pl.col("plan").replace(dict(override)))
    return timeline.sort("us")


def opening_ytd(events: pl.DataFrame, zone: str) -> pl.DataFrame:
    """(account_id, year, base): the ``ytd_kwh`` given at ``open``, for the year it opened in."""
    opens = events.filter(pl.col("type") == "open").with_columns(
        year=local_ts("us", zone).dt.year()
    )
    bases = [int(Decimal(str(json.loads(p).get("ytd_kwh", "0"))) * 1000) for p in opens["payload"]]
    return opens.select("account_id", "year").with_columns(base=pl.Series(bases, dtype=pl.Int64))


def spans(readings: pl.DataFrame, rebases: pl.DataFrame, register_max_milli: int) -> pl.DataFrame:
    """Consumption between consecutive points of each account's meter series (S4, S14.3).

    A rebase (a ``meter_regression`` reading) starts a span but ends none; a lower register
    on an accepted reading is a rollover.
    """
    accepted = readings.select("account_id", "meter_id", "us", "milli").with_columns(
        rebase=pl.lit(False)
    )
    if rebases.height:
        owners = accepted.select("meter_id", "us", "account_id").sort("us")
        located = (
            rebases.sort("us")
            .join_asof(owners, on="us", by="meter_id", strategy="backward", check_sortedness=False)
            .drop_nulls("account_id")
            .select("account_id", "meter_id", "us", "milli")
            .with_columns(rebase=pl.lit(True))
        )
        accepted = pl.concat([accepted, located])
    series = ["account_id", "meter_id"]
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift(1)) for c in series)
    points = sorted_by(accepted, series, "us").with_columns(
        t0=pl.when(same).then(pl.col("us").shift(1)),
        e0=pl.when(same).then(pl.col("milli").shift(1)),
    )
    raw = pl.col("milli") - pl.col("e0")
    return (
        points.filter(pl.col("t0").is_not_null() & ~pl.col("rebase"))
        .select(
            "account_id",
            "t0",
            t1="us",
            delta=pl.when(raw >= 0).then(raw).otherwise(raw + register_max_milli),
        )
        .with_row_index("span")
    )
