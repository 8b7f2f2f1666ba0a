"""Usage analysis (用能分析, SPEC S15.4): one ``usage_analysis`` row per billed account × month."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from config.settings import Settings
from jobs import aggregates, rating, tables
from jobs.bills import BillInputs
from jobs.money import div_half_up, fen, kwh, month_after
from jobs.rater import plan_data, plan_timeline
from store.clickhouse import ClickHouseStore

FLAT_PLAN, TOU_PLAN = "zhejiang-tiered", "zhejiang-tou"
PEAK_HOURS = range(8, 22)


def alt_plans(plans: Mapping[str, Any]) -> dict[str, str]:
    """The other built-in plan for every plan: TOU plans → flat, flat plans → TOU."""
    return {pid: FLAT_PLAN if plan.periods else TOU_PLAN for pid, plan in plans.items()}


def _median_twice(values: list[int]) -> int:
    """Twice the median (exact on integers)."""
    ordered = sorted(values)
    n = len(ordered)
    return 2 * ordered[n // 2] if n % 2 else ordered[n // 2 - 1] + ordered[n // 2]


def _anomaly_days(daily: list[int]) -> int:
    """Days with kWh above twice the month's median day."""
    if not daily:
        return 0
    twice_median = _median_twice(daily)
    return sum(1 for m in daily if m > twice_median)


def _hourly(hours: pl.DataFrame) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for aid, hour, milli in hours.select("account_id", "hour", "milli").iter_rows():
        found.setdefault(aid, [0] * 24)[hour] = milli
    return found


def _base_load(nights: pl.DataFrame) -> dict[str, int]:
    """Median over days of each day's lowest mean power (W) among intervals starting 00–06."""
    per_account: dict[str, list[int]] = {}
    for aid, watts in nights.sort("account_id", "day").select("account_id", "watts").iter_rows():
        per_account.setdefault(aid, []).append(watts)
    return {aid: div_half_up(_median_twice(w), 2) for aid, w in per_account.items()}


def analysis_rows(
    store: ClickHouseStore,
    settings: Settings,
    inputs: BillInputs,
    events: pl.DataFrame,
    bills: list[dict[str, Any]],
    month: date,
    today: date,
) -> list[dict[str, Any]]:
    """The ``usage_analysis`` rows of a month's bills."""
    if not bills:
        return []
    zone = inputs.zone
    end = month_after(month)
    # The month's intervals summed in ClickHouse: per local hour, and each night's minimum.
    hourly = _hourly(tables.interval_hours(store, month, end, zone))
    base = _base_load(tables.interval_nights(store, month, end, zone))
    peak_milli = {aid: sum(hours[h] for h in PEAK_HOURS) for aid, hours in hourly.items()}
    alternative = alt_plans(settings.rules.plans)
    register_max = int(settings.rules.register_max_kwh * 1000)
    # The month alone, from the year's cumulative at its first midnight, read from the
    # stream's rated parts where they hold every cut of both plans (jobs.aggregates).
    data = plan_data(settings.rules.plans)
    found = aggregates.from_intervals(
        store,
        aggregates.Window(month, end, zone),
        data.values(),
        tables.regressions(store),
        events,
        register_max,
    )
    alt_daily = rating.daily(aggregates.rated(found, plan_timeline(events, alternative), data))
    alt_charge = dict(alt_daily.group_by("account_id").agg(pl.col("charge").sum()).iter_rows())
    month_days = inputs.daily_usage.filter((pl.col("day") >= month) & (pl.col("day") < end))
    days_kwh: dict[str, list[tuple[date, int]]] = {}
    for aid, day, milli in month_days.sort("day").select("account_id", "day", "kwh").iter_rows():
        days_kwh.setdefault(aid, []).append((day, milli))
    rows = []
    for bill in bills:
        aid, plan = bill["account_id"], bill["plan"]
        total = int(bill["kwh"].scaleb(3))
        days = bill["days"]
        hours = hourly.get(aid, [0] * 24)
        daily = [m for _, m in days_kwh.get(aid, [])]
        prev = bill["kwh_prev_month"]
        row = {
            "account_id": aid,
            "month": month,
            "kwh": bill["kwh"],
            "hourly_kwh": [kwh(div_half_up(h, days)) if days else kwh(0) for h in hours],
            "peak_share": (
                Decimal(div_half_up(peak_milli.get(aid, 0) * 10_000, total)).scaleb(-4)
                if total
                else None
            ),
            "base_load_w": base.get(aid),
            "kwh_change_prev_month": (
                fen(div_half_up((total - int(prev.scaleb(3))) * 10_000, int(prev.scaleb(3))))
                if prev
                else None
            ),
            "anomaly_days": _anomaly_days(daily),
            "plan": plan,
            "charge": bill["charge"],
            "alt_plan": alternative.get(plan, ""),
            "alt_charge": fen(alt_charge.get(aid, 0)),
            "forecast_kwh": None,
            "forecast_charge": None,
            "generated_at": bill["generated_at"],
        }
        if month <= today < end and daily:
            _forecast(row, bill, days_kwh[aid], peak_milli.get(aid, 0), settings, end)
        rows.append(row)
    return rows


def _forecast(
    row: dict[str, Any],
    bill: dict[str, Any],
    days: list[tuple[date, int]],
    peak_milli: int,
    settings: Settings,
    end: date,
) -> None:
    """To date + mean of the last 7 days × days left, priced at the current tier."""
    recent = [m for _, m in days[-7:]]
    left = (end - days[-1][0]).days - 1
    extra = div_half_up(sum(recent), len(recent)) * left
    total = int(bill["kwh"].scaleb(3))
    plan = settings.rules.plans.get(bill["plan"])
    tier = bill["tier"] - 1
    if plan is None:
        return
    if plan.periods:
        extra_peak = div_half_up(extra * peak_milli, total) if total else 0
        split = {"peak": extra_peak, "valley": extra - extra_peak}
    else:
        split = {"flat": extra}
    cost = sum(int(plan.prices[name][tier] * 10_000) * milli for name, milli in split.items())
    row["forecast_kwh"] = kwh(total + extra)
    row["forecast_charge"] = bill["charge"] + fen(div_half_up(cost, 100_000))
