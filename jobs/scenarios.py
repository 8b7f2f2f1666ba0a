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
from store.clickhouse import ClickHouseStore

CSV_COLUMNS = ("account_id", "plan", "kwh", "current", "proposed", "change")
ACCOUNTS_PER_PASS = 20_000
TABLE = "tariff_scenarios"


@dataclass(frozen=True)
class ScenarioRun:
    """What a run produced."""

    scenario_id: str
    result: WhatIf
    csv_path: Path
    report_path: Path


def account_ranges(ids: list[str], per_pass: int) -> list[tables.AccountRange | None]:
    """(first, last) of every ``per_pass`` sorted account ids; [None] (everything) for none."""
    if per_pass < 1:
        raise ValueError("per_pass must be 1 or more")
    if not ids:
        return [None]
    return [(ids[i], ids[min(i + per_pass, len(ids)) - 1]) for i in range(0, len(ids), per_pass)]


def write_accounts_csv(result: WhatIf, path: Path) -> None:
    """One row per account: account_id, plan, kwh, current, proposed, change (yuan, 2 dp)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in result.accounts.iter_rows(named=True):
            writer.writerow(
                [
                    row["account_id"],
                    row["plan"],
                    kwh(row["kwh"]),
                    fen(row["current"]),
                    fen(row["proposed"]),
                    fen(row["change"]),
                ]
            )


def write_accounts_parquet(result: WhatIf, path: Path) -> None:
    """The CSV's rows as Parquet, money Decimal(18, 2) and energy Decimal(18, 3)."""
    frame = result.accounts
    pl.DataFrame(
        {
            "account_id": frame["account_id"],
            "plan": frame["plan"],
            "kwh": [kwh(v) for v in frame["kwh"]],
            **{c: [fen(v) for v in frame[c]] for c in ("current", "proposed", "change")},
        },
        schema={
            "account_id": pl.String,
            "plan": pl.String,
            "kwh": pl.Decimal(18, 3),
            **{c: pl.Decimal(18, 2) for c in ("current", "proposed", "change")},
        },
    ).write_parquet(path)


def scenario_rows(result: WhatIf, scenario: str, generated_at: datetime) -> list[dict[str, Any]]:
    """The ``tariff_scenarios`` rows of a run."""
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


def run_tariff_whatif(
    settings: Settings,
    proposed: dict[str, Plan],
    period: Period,
    out: Path,
    progress: IO[str] | None = None,
    per_pass: int = ACCOUNTS_PER_PASS,
) -> ScenarioRun:
    """Re-rate the period under today's and the proposed plans; write CSV, report, rows.

    The accounts are re-rated ``per_pass`` at a time, each range from its own aggregates
    (`jobs.aggregates`), so the memory follows the range and not the city.
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
        ranges = account_ranges(events["account_id"].unique().sort().to_list(), per_pass)
        bar = Progress("tariff what-if", len(ranges) * steps(plans), progress)
        parts = []
        try:
            for accounts in ranges:
                found = read_period(
                    store, opening, rebases, plans, proposed, period, zone, register_max, accounts
                )
                billed = tables.daily_usage(store, until=period.after, accounts=accounts)
                parts.append(run_whatif(found, events, billed, plans, proposed, period, bar, facts))
        finally:
            bar.finish()
        result = combine(parts)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, report_path = out / "accounts.csv", out / "report.html"
        write_accounts_csv(result, csv_path)
        write_accounts_parquet(result, out / "accounts.parquet")
        report_path.write_text(render_report(result, proposed, scenario), encoding="utf-8")
        rows = scenario_rows(result, scenario, datetime.now(UTC))
        for start in range(0, len(rows), 50_000):
            store.insert_rows(TABLE, rows[start : start + 50_000])
    return ScenarioRun(scenario, result, csv_path, report_path)
