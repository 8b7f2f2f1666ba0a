"""``wattpay tariff-whatif``: a proposal re-rated against the billed town, to the fen."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from jobs import scenarios, tables
from jobs.whatif import Period, WhatIf
from store.clickhouse import ClickHouseStore, encode_columns
from store.schema import row_values
from tests.paths import CONFORMANCE
from tests.whatif_town import PROPOSAL, WATTPAY, build_town
from wattpay.cli import main


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_town(tmp_path_factory.mktemp("town"))


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return {row["account_id"]: row for row in csv.DictReader(handle)}


def _whatif(
    dsn: str, proposal: Path, out: Path, first: str, last: str, per_pass: str = "20000"
) -> int:
    return main(
        [
            *("tariff-whatif", "--from", first, "--to", last, "--proposed", str(proposal)),
            *("--out", str(out), "--clickhouse", dsn, "--quiet"),
            *("--accounts-per-pass", per_pass),
        ]
    )


@pytest.mark.parametrize("per_pass", ["20000", "1"])  # one range, and one account a range
def test_hand_computed_town_to_the_fen(town: str, tmp_path: Path, per_pass: str) -> None:
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    assert _whatif(town, proposal, tmp_path / "out", "2026-06", "2026-06", per_pass) == 0
    rows = _rows(tmp_path / "out" / "accounts.csv")
    # H1, flat, opens at 2750 kWh and uses 30 kWh (00:00–12:00, no cut on a flat plan).
    # Today: 10 kWh up to 2760 at 0.538 = 5.380, 20 kWh at 0.588 = 11.760 → 17.14.
    # Proposed bound 2700: all 30 kWh in tier 2 at 0.588 = 17.640 → 17.64, change +0.50.
    # H2, TOU, 8 kWh over 06:00–10:00.
    # Today: cut at 08:00, cumulative round(8 × 2/4) = 4.000 valley at 0.288 = 1.152 and
    # 4.000 peak at 0.568 = 2.272 → 3.424 → 3.42.
    # Proposed: cut at 09:00, cumulative round(8 × 3/4) = 6.000 valley at 0.300 = 1.800 and
    # 2.000 peak at 0.600 = 1.200 → 3.00, change −0.42.
    # H3, flat, 10 kWh in tier 1 at 0.538 = 5.380 → 5.38 both ways.
    assert rows == {
        "H1": dict(account_id="H1", plan="zhejiang-tiered", kwh="30.000", current="17.14",
                   proposed="17.64", change="0.50"),
        "H2": dict(account_id="H2", plan="zhejiang-tou", kwh="8.000", current="3.42",
                   proposed="3.00", change="-0.42"),
        "H3": dict(account_id="H3", plan="zhejiang-tiered", kwh="10.000", current="5.38",
                   proposed="5.38", change="0.00"),
    }  # fmt: skip
    parquet = pl.read_parquet(tmp_path / "out" / "accounts.parquet")
    assert {r["account_id"]: {k: str(v) for k, v in r.items()} for r in parquet.to_dicts()} == rows
    assert parquet.schema["change"] == pl.Decimal(18, 2)
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    # Tiers, today: tier 1 = 10 + 8 + 10 = 28 kWh, 5.380 + 3.424 + 5.380 = 14.184 → 14.18;
    # tier 2 = 20 kWh, 11.76. Proposed: tier 1 = 8 + 10 = 18 kWh, 3.000 + 5.380 = 8.38;
    # tier 2 = 30 kWh, 17.64.
    assert "<td>1</td><td>28.000</td><td>14.18</td><td>18.000</td><td>8.38</td>" in report
    assert "<td>2</td><td>20.000</td><td>11.76</td><td>30.000</td><td>17.64</td>" in report
    # Districts: east = H1 + H2 = 17.14 + 3.42 = 20.56 → 17.64 + 3.00 = 20.64; west 5.38.
    assert "<td>east</td><td>2</td><td>20.56</td><td>20.64</td><td>0.08</td>" in report
    assert "<td>west&lt;i&gt;&amp;</td><td>1</td><td>5.38</td><td>5.38</td><td>0.00</td>" in report
    assert "<i>" not in report
    # Another existing plan, as proposed: H1 on the proposed TOU plan, cut at 09:00:
    # round(30 × 9/12) = 22.500 valley (10 at 0.300 = 3.000 to 2760, 12.5 at 0.350 = 4.375)
    # and 7.500 peak in tier 2 at 0.650 = 4.875 → 12.25, saving 17.64 − 12.25 = 5.39.
    # H3 on it: round(10 × 9/10) = 9.000 valley at 0.300 = 2.700 and 1.000 peak at 0.600
    # → 3.30, saving 5.38 − 3.30 = 2.08. H2 flat: 8 × 0.538 = 4.304 → 4.30 > 3.00, no.
    assert (
        "<td>zhejiang-tiered</td><td>zhejiang-tou</td><td>2</td><td>7.47</td>" in report
    )  # 5.39 + 2.08
    # The hardest-hit 1 % (at least one household): H1, 08:00–12:00 of its 00:00–12:00
    # is a third of its 30 kWh in 08–22 h.
    assert "<td>H1</td><td>zhejiang-tiered</td><td>30.000</td><td>1</td><td>33.33 %</td>" in report
    assert 'class="worse">1<' in report and 'class="better">1<' in report


def test_scenario_rows_are_rewritten_not_doubled(town: str, tmp_path: Path) -> None:
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    for _ in range(2):
        assert _whatif(town, proposal, tmp_path / "out", "2026-06", "2026-06") == 0
    with ClickHouseStore(town) as store:
        _, rows = store.query(
            "SELECT account_id, period_from, period_to, plan, kwh, current, proposed, change"
            " FROM tariff_scenarios FINAL WHERE scenario_id IN"
            " (SELECT scenario_id FROM tariff_scenarios WHERE account_id = 'H1'"
            "  AND change = 0.5) ORDER BY account_id"
        )
    assert [(r[0], str(r[1]), str(r[2]), r[5], r[6], r[7]) for r in rows] == [
        ("H1", "2026-06-01", "2026-06-30", Decimal("17.14"), Decimal("17.64"), Decimal("0.50")),
        ("H2", "2026-06-01", "2026-06-30", Decimal("3.42"), Decimal("3.00"), Decimal("-0.42")),
        ("H3", "2026-06-01", "2026-06-30", Decimal("5.38"), Decimal("5.38"), Decimal("0.00")),
    ]


@pytest.mark.parametrize(("name", "per_pass"), [("town", "20000"), ("sample2", "3")])
def test_todays_plans_proposed_give_zero_change(
    name: str, per_pass: str, town: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if name == "town":
        dsn, first, last = town, "2026-06", "2026-06"
    else:
        work = tmp_path / "sample2"
        shutil.copytree(CONFORMANCE / "sample2", work)
        dsn = f"chdb://{tmp_path / 'clickhouse'}"
        subprocess.run([*WATTPAY, "replay", str(work), "--clickhouse", dsn, "--quiet"], check=True)
        first, last = "2026-12", "2027-01"  # across 1 January, where the tiers start again
    capsys.readouterr()
    assert main(["config", "--plan", "zhejiang-tiered", "--plan", "zhejiang-tou"]) == 0
    proposal = tmp_path / "same.toml"
    proposal.write_text(capsys.readouterr().out, encoding="utf-8")
    assert _whatif(dsn, proposal, tmp_path / "out", first, last, per_pass) == 0
    rows = _rows(tmp_path / "out" / "accounts.csv")
    assert rows and all(r["change"] == "0.00" for r in rows.values())
    assert all(r["current"] == r["proposed"] for r in rows.values())
    with ClickHouseStore(dsn) as store:
        _, billed = store.query(
            "SELECT account_id, sum(charge) FROM daily_usage FINAL"
            f" WHERE day >= '{first}-01' AND day < '2027-02-01' GROUP BY account_id"
        )
    assert {a: Decimal(r["current"]) for a, r in rows.items()} == dict(billed)


def test_a_billed_fen_off_stops_the_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dsn = build_town(tmp_path / "town")
    with ClickHouseStore(dsn) as store:
        columns, found = store.query("SELECT * FROM daily_usage FINAL WHERE account_id = 'H2'")
        row = dict(zip(columns, found[0], strict=True))
        row["charge"] += Decimal("0.01")
        store.insert_rows("daily_usage", [row])
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    capsys.readouterr()
    assert _whatif(dsn, proposal, tmp_path / "out", "2026-06", "2026-06") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "wattpay tariff-whatif: today's plans re-rated differ from daily_usage on 1 row(s) "
        "(first: H2 2026-06-01 charge billed 3.43, re-rated 3.42); run `wattpay reconcile` "
        "and fix that first"
    ]
    assert not (tmp_path / "out" / "accounts.csv").exists()


def test_progress_bar_counts_every_step_of_every_range(
    town: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    args = ["--from", "2026-06", "--to", "2026-06", "--proposed", str(proposal)]
    args += ["--out", str(tmp_path / "out"), "--clickhouse", town, "--accounts-per-pass", "2"]
    capsys.readouterr()
    assert main(["tariff-whatif", *args]) == 0
    err = capsys.readouterr().err
    # Two ranges (H1–H2, H3) × 5 steps: check, proposal, each of 2 plans, the sums.
    assert err.rstrip().endswith("tariff what-if [##############################] 10/10")


def _figures(kwh: list[int], money: list[int]) -> WhatIf:
    """A what-if whose accounts carry the given figures (the other tables are not used)."""
    accounts = pl.DataFrame(
        {
            "account_id": [f'A{n},"x"' if n == 1 else f"A{n}" for n in range(len(kwh))],
            "plan": ["zhejiang-tiered"] * len(kwh),
            "kwh": kwh,
            "current": money,
            "proposed": [-m for m in money],
            "change": [-2 * m for m in money],
        },
        schema_overrides={c: pl.Int64 for c in ("kwh", "current", "proposed", "change")},
    )
    empty = pl.DataFrame()
    return WhatIf(Period(date(2026, 6, 1), date(2026, 6, 30)), accounts, *[empty] * 4, 0)


def test_csv_parquet_and_scenario_columns_are_the_decimals_of_the_rows(tmp_path: Path) -> None:
    # The text and columns are built from the integers without a Decimal per value: they
    # must be what the Decimals of `scenario_rows` print and encode, signs and zeros included.
    kwh = [0, 1, 9, 10, 999, 1000, 1001, 123_456_789, -5, -1000, 10**17 + 7]
    money = [0, -1, 5, -99, 100, 101, -100, 12_345, -12_345, 7, -(10**17)]
    result = _figures(kwh, money)
    at = datetime(2026, 7, 1, 9, 30, 12, 345_000, tzinfo=UTC)
    rows = scenarios.scenario_rows(result, "s1", at)
    expected = encode_columns("tariff_scenarios", [row_values("tariff_scenarios", r) for r in rows])
    assert scenarios.scenario_columns(result, "s1", at) == expected
    scenarios.write_accounts_csv(result, tmp_path / "a.csv")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(scenarios.CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [r["account_id"], r["plan"], r["kwh"], r["current"], r["proposed"], r["change"]]
        )
    assert (tmp_path / "a.csv").read_bytes() == buffer.getvalue().encode("utf-8")
    scenarios.write_accounts_parquet(result, tmp_path / "a.parquet")
    back = pl.read_parquet(tmp_path / "a.parquet")
    assert back.schema["kwh"] == pl.Decimal(18, 3) and back.schema["change"] == pl.Decimal(18, 2)
    assert back["kwh"].to_list() == [r["kwh"] for r in rows]
    assert back["change"].to_list() == [r["change"] for r in rows]


def test_a_pass_holds_a_bounded_number_of_account_days(town: str) -> None:
    """A city day goes 20,000 accounts a pass; a year fewer, so a pass's memory stays bounded."""
    assert scenarios.accounts_per_pass(1) == scenarios.ACCOUNTS_PER_PASS
    assert scenarios.accounts_per_pass(0) == scenarios.ACCOUNTS_PER_PASS
    for days in (31, 365, 3653):
        per_pass = scenarios.accounts_per_pass(days)
        assert per_pass * days <= scenarios.ACCOUNT_DAYS_PER_PASS < (per_pass + 1) * days
    assert scenarios.accounts_per_pass(365) == 821
    assert scenarios.account_ranges([f"A{i:05}" for i in range(2000)], 821) == [
        ("A00000", "A00820"),
        ("A00821", "A01641"),
        ("A01642", "A01999"),
    ]
    with ClickHouseStore(town) as store:  # the days a period's passes are sized by
        days = store.query("SELECT DISTINCT day FROM daily_usage FINAL ORDER BY day")[1]
        first, last = days[0][0], days[-1][0]
        assert tables.days_with_usage(store, first, last) == len(days) >= 1
        assert tables.days_with_usage(store, first, first) == 1
        assert tables.days_with_usage(store, first - timedelta(days=1), last) == len(days)
        assert tables.days_with_usage(store, date(1999, 1, 1), date(1999, 12, 31)) == 0
