"""``wattpay reconcile`` (S15.5): the batch re-rating agrees with the stream, and finds a fen."""

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from store.clickhouse import ClickHouseStore
from tests.paths import CONFORMANCE
from wattpay.cli import main

WATTPAY = [sys.executable, "-m", "wattpay.cli"]


def _replay(inputs: Path, tmp_path: Path) -> str:
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    subprocess.run([*WATTPAY, "replay", str(inputs), "--clickhouse", dsn, "--quiet"], check=True)
    return dsn


@pytest.mark.parametrize("name", ["sample1", "sample2"])
def test_reconcile_passes_on_conformance_set_and_catches_a_fen(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / name
    shutil.copytree(CONFORMANCE / name, work)
    dsn = _replay(work, tmp_path)
    assert main(["reconcile", "--clickhouse", dsn, "--out", str(tmp_path / "rec")]) == 0
    summary = json.loads((tmp_path / "rec" / "reconcile-summary.json").read_text())
    assert summary["differences"] == 0
    assert summary["daily_usage_rows"] == {"sample1": 92, "sample2": 385}[name]
    capsys.readouterr()
    with ClickHouseStore(dsn) as store:
        columns, rows = store.query(
            "SELECT * FROM daily_usage FINAL WHERE kwh > 0 ORDER BY account_id, day LIMIT 1"
        )
        row = dict(zip(columns, rows[0], strict=True))
        row["charge"] += Decimal("0.01")
        store.insert_rows("daily_usage", [row])
    assert main(["reconcile", "--clickhouse", dsn]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{row['account_id']} {row['day']} charge: daily_usage {row['charge']} "
        f"≠ batch {row['charge'] - Decimal('0.01')}"
    ]
    day = str(row["day"])
    assert main(["reconcile", "--clickhouse", dsn, "--from", day, "--to", day]) == 1
    later = row["day"].replace(year=row["day"].year + 1).isoformat()
    assert main(["reconcile", "--clickhouse", dsn, "--from", later]) == 0


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_reconcile_edge_cases_agree_with_the_stream(tmp_path: Path) -> None:
    """TOU across midnight and 22:00, a tier bound inside an interval, a plan change inside a
    span, a rollover, a regression, a meter replacement, Jan 1 and a final reading."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    _jsonl(
        inputs / "accounts.jsonl",
        [
            {
                "type": "open",
                "account_id": "B1",
                "meter_id": "N1",
                "plan": "zhejiang-tou",
                "ts": "2026-12-30T20:00:00+08:00",
                "ytd_kwh": "2759.5",
                "opening_balance": "80.00",
            },
            {
                "type": "change_plan",
                "account_id": "B1",
                "plan": "zhejiang-tiered",
                "ts": "2026-12-31T03:10:00+08:00",
            },
            {
                "type": "replace_meter",
                "account_id": "B1",
                "old_meter_id": "N1",
                "old_final_kwh": "1.000",
                "new_meter_id": "N2",
                "new_initial_kwh": "5",
                "ts": "2026-12-31T12:00:00+08:00",
            },
            {
                "type": "change_plan",
                "account_id": "B1",
                "plan": "zhejiang-tou",
                "ts": "2026-12-31T23:30:00+08:00",
            },
            {
                "type": "close",
                "account_id": "B1",
                "ts": "2027-01-01T09:00:00+08:00",
                "final_kwh": "21.5",
            },
        ],
    )
    _jsonl(
        inputs / "readings.jsonl",
        [
            {"meter_id": "N1", "ts": "2026-12-30T20:00:00+08:00", "energy_kwh": "999990.000"},
            # 21:00 → 02:07 crosses 22:00 (valley), midnight and the 2760 kWh bound.
            {"meter_id": "N1", "ts": "2026-12-30T21:00:00+08:00", "energy_kwh": "999990.700"},
            {"meter_id": "N1", "ts": "2026-12-31T02:07:00+08:00", "energy_kwh": "999993.001"},
            # Spans the plan change at 03:10.
            {"meter_id": "N1", "ts": "2026-12-31T05:00:00+08:00", "energy_kwh": "999995.555"},
            # A regression: rebased without charge.
            {"meter_id": "N1", "ts": "2026-12-31T06:00:00+08:00", "energy_kwh": "999980.000"},
            {"meter_id": "N1", "ts": "2026-12-31T07:00:00+08:00", "energy_kwh": "999981.234"},
            # Rollover past the register maximum 1,000,000.
            {"meter_id": "N1", "ts": "2026-12-31T09:00:00+08:00", "energy_kwh": "999999.100"},
            {"meter_id": "N1", "ts": "2026-12-31T10:00:00+08:00", "energy_kwh": "0.500"},
            {"meter_id": "N2", "ts": "2026-12-31T18:00:00+08:00", "energy_kwh": "9.999"},
            # Across the change back to TOU at 23:30 and Jan 1 00:00.
            {"meter_id": "N2", "ts": "2027-01-01T01:00:00+08:00", "energy_kwh": "14.321"},
            {"meter_id": "N2", "ts": "2027-01-01T08:59:00+08:00", "energy_kwh": "20.000"},
        ],
    )
    dsn = _replay(inputs, tmp_path)
    with ClickHouseStore(dsn) as store:
        _, reasons = store.query("SELECT reason FROM rejected FINAL")
        _, rolled = store.query(
            "SELECT sum(kwh) FROM intervals FINAL WHERE `start` >= "
            "'2026-12-31 09:00:00' AND `end` <= '2026-12-31 10:00:00'"
        )
        _, days = store.query(
            "SELECT day, kwh, kwh_tier2, ytd_kwh FROM daily_usage FINAL ORDER BY day"
        )
    assert reasons == [("meter_regression",)]
    assert rolled == [(Decimal("1.400"),)]  # 0.500 + 1,000,000 − 999,999.100
    assert [d[0].isoformat() for d in days] == ["2026-12-30", "2026-12-31", "2027-01-01"]
    assert days[0][2] > 0 and days[2][3] == days[2][1]  # tier 2 reached; ytd restarts Jan 1
    assert main(["reconcile", "--clickhouse", dsn]) == 0
