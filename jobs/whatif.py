"""Tariff what-if: every household's consumption of a period re-rated under proposed plans.

The batch rater of the reconciliation (`jobs.rater`, `jobs.rating`) rates the period's
consumption twice: under today's plans, where the result must equal the billed
``daily_usage`` to the fen (the reconciliation's own check), and with the proposed
``[plans.ID]`` tables in place of the plans of those ids. Its input comes pre-aggregated
from ClickHouse (`jobs.aggregates`): the uncut quarter hours summed per account × day ×
segment, the other spans raw, and the year's cumulative at the period's first midnight.
Money stays in fen, energy in thousandths of a kWh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from billing.tariffs import Plan
from config.errors import OperatorError
from jobs import aggregates, tables
from jobs.aggregates import Aggregated
from jobs.money import fen, kwh, month_after
from jobs.progress import Progress
from jobs.rater import TIERS, plan_data, plan_timeline
from jobs.rating import daily
from jobs.reconcile import differences
from store.clickhouse import ClickHouseStore

PEAK_FROM_US, PEAK_TO_US = 8 * 3_600_000_000, 22 * 3_600_000_000


class BilledMismatch(OperatorError, ValueError):
    """Today's plans re-rated do not give the billed ``daily_usage``: no report is made."""


@dataclass(frozen=True)
class Period:
    """Whole calendar months: ``first`` day to ``last`` day, both included."""

    first: date
    last: date

    @property
    def after(self) -> date:
        """The day after the period."""
        return month_after(self.last.replace(day=1))


@dataclass(frozen=True)
class WhatIf:
    """The what-if's figures (fen and thousandths of a kWh, integers)."""

    period: Period
    accounts: pl.DataFrame  # account_id, plan, district, kwh, current, proposed, change, ...
    months: pl.DataFrame  # month, current, proposed
    districts: pl.DataFrame  # district, accounts, current, proposed
    tiers: pl.DataFrame  # tier, kwh_current, kwh_proposed, current, proposed (exact cost)
    alternatives: pl.DataFrame  # account_id, plan, proposed, best_plan, best
    days_checked: int


def read_period(
    store: ClickHouseStore,
    opening: pl.DataFrame,
    rebases: pl.DataFrame,
    plans: Mapping[str, Plan],
    proposed: Mapping[str, Plan],
    period: Period,
    zone: str,
    register_max_milli: int,
    accounts: tables.AccountRange | None = None,
) -> Aggregated:
    """The period's rater input for a range of accounts, segmented for every plan of the run.

    The days are cut at the period starts of today's and the proposed plans and at 08:00
    and 22:00 (the usage profile's hours), so every merged part lies in one period under
    every plan and wholly inside or outside those hours. ``opening`` is
    `jobs.rater.opening_ytd` of the account events, ``rebases`` `tables.regressions`.
    """
    return aggregates.aggregated(
        store,
        aggregates.Window(period.first, period.after, zone),
        plan_data({**plans, **proposed}).values(),
        rebases,
        opening,
        register_max_milli,
        accounts,
        (PEAK_FROM_US, PEAK_TO_US),
    )


def _rated(
    found: Aggregated,
    events: pl.DataFrame,
    plans: Mapping[str, Plan],
    override: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Every part of the period rated under ``plans`` (the reconciliation's rater)."""
    return aggregates.rated(found, plan_timeline(events, override), plan_data(plans))


def _in_period(frame: pl.DataFrame, period: Period) -> pl.DataFrame:
    return frame.filter((pl.col("day") >= period.first) & (pl.col("day") <= period.last))


def _per_account(days: pl.DataFrame, name: str) -> pl.DataFrame:
    return days.group_by("account_id").agg(pl.col("charge").sum().alias(name))


def _tiers(rated: pl.DataFrame, name: str) -> pl.DataFrame:
    """Energy and exact cost (1/10^7 yuan) per tier over the period."""
    sums = rated.select(
        *(pl.col(f"q{k}").sum().alias(f"kwh{k}") for k in range(1, TIERS + 1)),
        *((pl.col(f"q{k}") * pl.col(f"p{k}")).sum().alias(f"cost{k}") for k in range(1, TIERS + 1)),
    ).row(0)
    kwh = [int(v or 0) for v in sums[:TIERS]]
    cost = [int(v or 0) for v in sums[TIERS:]]
    return pl.DataFrame(
        {"tier": list(range(1, TIERS + 1)), f"kwh_{name}": kwh, name: cost},
        schema={"tier": pl.Int64, f"kwh_{name}": pl.Int64, name: pl.Int64},
    )


def _profiles(rated: pl.DataFrame) -> pl.DataFrame:
    """Per account: days with consumption, kWh used 08:00–22:00 local, kWh above tier 1.

    A part's kWh counts in 08:00–22:00 in proportion to the time it overlaps those hours
    (parts never cross midnight); a usage profile, not money, so the division truncates.
    """
    length = pl.col("end") - pl.col("start")
    overlap = (
        pl.min_horizontal(pl.col("clock") + length, pl.lit(PEAK_TO_US))
        - pl.max_horizontal(pl.col("clock"), pl.lit(PEAK_FROM_US))
    ).clip(lower_bound=0)
    share = (pl.col("milli").cast(pl.Int128) * overlap // length).cast(pl.Int64)
    return rated.group_by("account_id").agg(
        days_used=pl.col("day").filter(pl.col("milli") > 0).n_unique(),
        kwh_peak_hours=share.sum(),
        kwh_above_tier1=(pl.col("q2") + pl.col("q3")).sum(),
    )


def _district(payload: str | None) -> str:
    """The ``district`` given at ``open`` ("" when none, or when the payload is not an object)."""
    try:
        body = json.loads(payload or "{}")
    except ValueError:
        return ""
    value = body.get("district") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def account_facts(events: pl.DataFrame, at_us: int) -> pl.DataFrame:
    """account_id, plan (in force at ``at_us``), district (given at ``open``)."""
    plans = (
        events.filter(pl.col("type").is_in(["open", "change_plan"]) & (pl.col("us") < at_us))
        .sort("us")
        .group_by("account_id")
        .agg(pl.col("plan").last())
    )
    opens = events.filter(pl.col("type") == "open")
    districts = [_district(p) for p in opens["payload"].to_list()]
    located = opens.select("account_id").with_columns(
        district=pl.Series(districts, dtype=pl.String)
    )
    return plans.join(located.unique("account_id", keep="last"), on="account_id", how="left")


def steps(plans: Mapping[str, Plan]) -> int:
    """How many times `run_whatif` advances its progress bar."""
    return 3 + len(plans)


def _advance(bar: Progress | None) -> None:
    if bar is not None:
        bar.advance()


def _districts(accounts: pl.DataFrame) -> pl.DataFrame:
    return (
        accounts.group_by("district")
        .agg(
            accounts=pl.len(),
            current=pl.col("current").sum(),
            proposed=pl.col("proposed").sum(),
        )
        .sort("district")
    )


def combine(parts: Sequence[WhatIf]) -> WhatIf:
    """One what-if from the what-ifs of disjoint ranges of accounts over the same period."""
    if len(parts) == 1:
        return parts[0]
    accounts = pl.concat([p.accounts for p in parts]).sort("account_id")
    months = pl.concat([p.months for p in parts]).group_by("month").agg(pl.all().sum())
    tiers = pl.concat([p.tiers for p in parts]).group_by("tier").agg(pl.all().sum())
    return WhatIf(
        parts[0].period,
        accounts,
        months.sort("month"),
        _districts(accounts),
        tiers.sort("tier"),
        pl.concat([p.alternatives for p in parts]).sort("account_id"),
        sum(p.days_checked for p in parts),
    )


def run_whatif(
    found: Aggregated,
    events: pl.DataFrame,
    billed: pl.DataFrame,
    plans: Mapping[str, Plan],
    proposed: Mapping[str, Plan],
    period: Period,
    bar: Progress | None = None,
    facts: pl.DataFrame | None = None,
) -> WhatIf:
    """Re-rate the period under today's plans and the proposed ones; check, then sum up.

    ``found`` is `read_period`'s; ``events`` the account events; ``billed`` is
    ``daily_usage`` (fen, milli); ``facts`` `account_facts` at the period's end (made from
    ``events`` when not given: a run of many ranges makes it once). Raises BilledMismatch
    when today's plans re-rated differ from it on any day of the period.
    """
    catalog = {**plans, **proposed}
    alternatives = sorted(plans)
    end = found.window.end
    current_rated = _rated(found, events, plans)
    current_days = daily(current_rated)
    current_tiers = _tiers(_in_period(current_rated, period), "current")
    del current_rated  # the rated parts are the run's largest frames: one at a time
    # The year's cumulative at the period's first midnight: what a day without consumption
    # carries when no earlier day of the period had any.
    mismatch = differences(billed, current_days, found.bases, period.first, period.last)
    _advance(bar)
    if mismatch.height:
        first = mismatch.row(0, named=True)
        scaled = fen if first["column"] == "charge" else kwh
        billed_value = "no row" if first["stream"] is None else scaled(first["stream"])
        raise BilledMismatch(
            f"today's plans re-rated differ from daily_usage on {mismatch.height} row(s) "
            f"(first: {first['account_id']} {first['day']} {first['column']} billed "
            f"{billed_value}, re-rated {scaled(first['batch'])}); run `wattpay reconcile` "
            "and fix that first"
        )
    proposed_rated = _in_period(_rated(found, events, catalog), period)
    proposed_days = daily(proposed_rated)
    proposed_tiers = _tiers(proposed_rated, "proposed")
    profiles = _profiles(proposed_rated)
    del proposed_rated
    _advance(bar)
    current_days = _in_period(current_days, period)
    proposed_days = _in_period(proposed_days, period)
    billed_accounts = _in_period(billed, period).select("account_id").unique()
    if facts is None:
        facts = account_facts(events, end)
    accounts = (
        pl.concat([billed_accounts, current_days.select("account_id").unique()])
        .unique()
        .join(facts, on="account_id", how="left")
        .join(
            current_days.group_by("account_id").agg(kwh=pl.col("kwh").sum()),
            on="account_id",
            how="left",
        )
        .join(_per_account(current_days, "current"), on="account_id", how="left")
        .join(_per_account(proposed_days, "proposed"), on="account_id", how="left")
        .join(profiles, on="account_id", how="left")
        .with_columns(
            pl.col("plan", "district").fill_null(""),
            pl.col("kwh", "current", "proposed", "days_used", "kwh_peak_hours", "kwh_above_tier1")
            .fill_null(0)
            .cast(pl.Int64),
        )
        .with_columns(change=pl.col("proposed") - pl.col("current"))
        .sort("account_id")
    )
    best = []
    for plan_id in alternatives:
        # Households on this plan at the period's end are not asked about it again.
        others = accounts.filter(pl.col("plan") != plan_id).select("account_id")
        mapped = {pid: plan_id for pid in catalog}
        rated = _rated(found.only(others), events, catalog, mapped)
        best.append(
            _per_account(_in_period(daily(rated), period), "charge").with_columns(
                best_plan=pl.lit(plan_id)
            )
        )
        _advance(bar)
    cheaper = (
        pl.concat(best)
        .join(accounts.select("account_id", "plan", "proposed"), on="account_id")
        .filter(pl.col("best_plan") != pl.col("plan"))
        .sort("charge", "best_plan")
        .group_by("account_id", maintain_order=True)
        .first()
        .filter(pl.col("charge") < pl.col("proposed"))
        .select("account_id", "plan", "proposed", "best_plan", best="charge")
        .sort("account_id")
    )
    months = (
        current_days.group_by(month=pl.col("day").dt.truncate("1mo"))
        .agg(current=pl.col("charge").sum())
        .join(
            proposed_days.group_by(month=pl.col("day").dt.truncate("1mo")).agg(
                proposed=pl.col("charge").sum()
            ),
            on="month",
            how="full",
            coalesce=True,
        )
        .fill_null(0)
        .sort("month")
    )
    districts = _districts(accounts)
    tiers = current_tiers.join(proposed_tiers, on="tier")
    _advance(bar)
    return WhatIf(
        period, accounts, months, districts, tiers, cheaper, _in_period(billed, period).height
    )
