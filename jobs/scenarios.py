"""``wattpay tariff-whatif``: read ClickHouse, re-rate, write the CSV, Parquet, report and rows.

Re-running the same proposal over the same period rewrites the same ``tariff_scenarios``
rows (the scenario id is a hash of the proposal and the period).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from billing.tariffs import Plan
from config.settings import Settings
from jobs import tables
from jobs.money import fen, kwh
from jobs.progress import Progress
from jobs.proposal import scenario_id
from jobs.rater import opening_ytd
from jobs.whatif import (
    Period,
    WhatIf,
    account_facts,
    combine,
    read_period,
    run_whatif,
    steps,
)
from jobs.whatif_report import render_report
from store.clickhouse import SCALED, ClickHouseStore, Columns, column_encodings, encode_columns
from store.schema import row_values, table_spec

CSV_COLUMNS = ("account_id", "plan", "kwh", "current", "proposed", "change")
ACCOUNTS_PER_PASS = 20_000
"""The most accounts re-rated together: a city day in 14 passes."""
ACCOUNT_DAYS_PER_PASS = 300_000
"""Accounts × days with usage of a pass by default: a pass holds about 7 kB an account and
day (1,000 households for a year: 3.1 GB at its peak), so a year goes 821 accounts at a
time and a city day 20,000."""
TABLE = "tariff_scenarios"
SCENARIO_COLUMNS = table_spec(TABLE).column_names
INSERT_ROWS = 50_000


@dataclass(frozen=True)
class ScenarioRun:
    """What a run produced."""

    scenario_id: str
    result: WhatIf
    csv_path: Path
    report_path: Path


def accounts_per_pass(days: int) -> int:
    """Accounts a pass re-rates by default over ``days`` days with usage (at most 20,000)."""
    return max(1, min(ACCOUNTS_PER_PASS, ACCOUNT_DAYS_PER_PASS // max(days, 1)))


def account_ranges(ids: list[str], per_pass: int) -> list[tables.AccountRange | None]:
    """(first, last) of every ``per_pass`` sorted account ids; [None] (everything) for none."""
    if per_pass < 1:
        raise ValueError("per_pass must be 1 or more")
    if not ids:
        return [None]
    return [(ids[i], ids[min(i + per_pass, len(ids)) - 1]) for i in range(0, len(ids), per_pass)]


def _decimal_text(column: str, scale: int) -> pl.Expr:
    """Integers in units of 10^-scale as ``str(Decimal(v).scaleb(-scale))`` writes them.

    The CSV and the Parquet take the same text that `jobs.money.fen`/`kwh` would print,
    without a Decimal per value: at city scale that is over a million of them.
    """
    value = pl.col(column)
    unit = 10**scale
    return pl.concat_str(
        pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (value.abs() // unit).cast(pl.String),
        pl.lit("."),
        (value.abs() % unit).cast(pl.String).str.zfill(scale),
    ).alias(column)


def _accounts_text(result: WhatIf) -> pl.DataFrame:
    """The CSV's columns as text: energy with 3 decimals, money with 2 (yuan)."""
    return result.accounts.select(
        "account_id",
        "plan",
        _decimal_text("kwh", 3),
        *(_decimal_text(c, 2) for c in ("current", "proposed", "change")),
    )


def write_accounts_csv(result: WhatIf, path: Path) -> None:
    """One row per account: account_id, plan, kwh, current, proposed, change (yuan, 2 dp)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_accounts_text(result).iter_rows())


def write_accounts_parquet(result: WhatIf, path: Path) -> None:
    """The CSV's rows as Parquet, money Decimal(18, 2) and energy Decimal(18, 3)."""
    _accounts_text(result).cast(
        {
            "kwh": pl.Decimal(18, 3),
            **{c: pl.Decimal(18, 2) for c in ("current", "proposed", "change")},
        }
    ).write_parquet(path)


def scenario_rows(result: WhatIf, scenario: str, generated_at: datetime) -> list[dict[str, Any]]:
    """The ``tariff_scenarios`` rows of a run, as dicts (`scenario_columns` is what is sent)."""
    return [
        {
            "scenario_id": scenario,
            "account_id": row["account_id"],
            "period_from": result.period.first,
            "period_to": result.period.last,
            "plan": row["plan"],
            "kwh": kwh(row["kwh"]),
            "current": fen(row["current"]),
            "proposed": fen(row["proposed"]),
            "change": fen(row["change"]),
            "generated_at": generated_at,
        }
        for row in result.accounts.iter_rows(named=True)
    ]


def scenario_columns(result: WhatIf, scenario: str, generated_at: datetime) -> Columns:
    """`scenario_rows` as the columns an insert sends (`store.clickhouse.encode_columns`).

    The frame's integers are already the scaled values of the Decimal columns (milli for
    energy, fen for money), so 274,000 rows go in without a dict or a Decimal per value.
    """
    frame = result.accounts
    scaled = {"kwh": 3, "current": 2, "proposed": 2, "change": 2}
    for index, name in enumerate(SCENARIO_COLUMNS):
        if name in scaled and column_encodings(TABLE)[index] != (SCALED, scaled[name], 18):
            raise ValueError(f"{TABLE}.{name} is not stored as the scaled integers sent")
    for name in scaled:
        if frame.height and int(frame[name].abs().max()) >= 10**18:  # type: ignore[arg-type]
            raise ValueError(f"{TABLE}.{name}: a value does not fit Decimal(18, {scaled[name]})")
    height = frame.height
    ticks = encode_columns(TABLE, [row_values(TABLE, _template(scenario, result, generated_at))])
    return [
        [scenario] * height,
        frame["account_id"].to_list(),
        [result.period.first] * height,
        [result.period.last] * height,
        frame["plan"].to_list(),
        *(frame[name].to_list() for name in scaled),
        ticks[-1] * height,
    ]


def _template(scenario: str, result: WhatIf, generated_at: datetime) -> dict[str, Any]:
    """A row with the run's shared values, checked and encoded once for every row."""
    return {
        "scenario_id": scenario,
        "account_id": "",
        "period_from": result.period.first,
        "period_to": result.period.last,
        "plan": "",
        "kwh": kwh(0),
        "current": fen(0),
        "proposed": fen(0),
        "change": fen(0),
        "generated_at": generated_at,
    }


def _events_of(events: pl.DataFrame, accounts: tables.AccountRange | None) -> pl.DataFrame:
    """The events of a range's accounts (all for None), as its ClickHouse reads select them.

    A range's rating needs only its own accounts' plan timelines; handing it the city's
    made every one of its passes sort and join 274,000 accounts' events.
    """
    if accounts is None:
        return events
    return events.filter(pl.col("account_id").is_between(pl.lit(accounts[0]), pl.lit(accounts[1])))


def run_tariff_whatif(
    settings: Settings,
    proposed: dict[str, Plan],
    period: Period,
    out: Path,
    progress: IO[str] | None = None,
    per_pass: int | None = None,
) -> ScenarioRun:
    """Re-rate the period under today's and the proposed plans; write CSV, report, rows.

    The accounts are re-rated ``per_pass`` at a time (`accounts_per_pass` of the period's
    days with usage when None), each
    range from its own aggregates (`jobs.aggregates`), so the memory follows the range and
    not the city.
    """
    zone = str(settings.rules.zone)
    register_max = int(settings.rules.register_max_kwh * 1000)
    scenario = scenario_id(proposed, period.first, period.last)
    plans = settings.rules.plans
    with ClickHouseStore(settings.clickhouse_dsn) as store:
        store.migrate()
        events, rebases = tables.account_events(store), tables.regressions(store)
        # Parsed once from the events' payloads: every range joins its own accounts.
        opening = opening_ytd(events, zone)
        facts = account_facts(events, tables.midnight_us(period.after, zone))
        if per_pass is None:
            per_pass = accounts_per_pass(tables.days_with_usage(store, period.first, period.last))
        ranges = account_ranges(events["account_id"].unique().sort().to_list(), per_pass)
        bar = Progress("tariff what-if", len(ranges) * steps(plans), progress)
        parts = []
        try:
            for accounts in ranges:
                found = read_period(
                    store, opening, rebases, plans, proposed, period, zone, register_max, accounts
                )
                billed = tables.daily_usage(store, until=period.after, accounts=accounts)
                own = _events_of(events, accounts)
                parts.append(run_whatif(found, own, billed, plans, proposed, period, bar, facts))
        finally:
            bar.finish()
        result = combine(parts)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, report_path = out / "accounts.csv", out / "report.html"
        write_accounts_csv(result, csv_path)
        write_accounts_parquet(result, out / "accounts.parquet")
        report_path.write_text(render_report(result, proposed, scenario), encoding="utf-8")
        columns = scenario_columns(result, scenario, datetime.now(UTC))
        for start in range(0, result.accounts.height, INSERT_ROWS):
            store.insert_columns(TABLE, [c[start : start + INSERT_ROWS] for c in columns])
    return ScenarioRun(scenario, result, csv_path, report_path)
