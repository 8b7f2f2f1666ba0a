"""A small town for the tariff what-if tests: three households, one day, billed by ``replay``.

H1 (flat, east) opens 10 kWh below the 2760 kWh tier bound and uses 30 kWh; H2 (TOU, east)
uses 8 kWh across 08:00; H3 (flat, west<i>&) uses 10 kWh in tier 1. The proposal moves the flat
tier bound to 2700 kWh and the TOU peak start to 09:00 with new TOU prices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WATTPAY = [sys.executable, "-m", "wattpay.cli"]

ACCOUNTS = [
    {"account_id": "H1", "meter_id": "M1", "plan": "zhejiang-tiered", "ytd_kwh": "2750"},
    {"account_id": "H2", "meter_id": "M2", "plan": "zhejiang-tou", "ytd_kwh": "0"},
    {"account_id": "H3", "meter_id": "M3", "plan": "zhejiang-tiered", "ytd_kwh": "0"},
]
DISTRICTS = {"H1": "east", "H2": "east", "H3": "west<i>&"}  # markup in a name stays text
READINGS = [
    ("M1", "2026-06-01T00:00:00+08:00", "0.000"),
    ("M1", "2026-06-01T12:00:00+08:00", "30.000"),
    ("M2", "2026-06-01T06:00:00+08:00", "0.000"),
    ("M2", "2026-06-01T10:00:00+08:00", "8.000"),
    ("M3", "2026-06-01T00:00:00+08:00", "0.000"),
    ("M3", "2026-06-01T10:00:00+08:00", "10.000"),
]
PROPOSAL = """\
[plans.zhejiang-tiered]
tier_bounds = ["2700", "4800"]
[plans.zhejiang-tiered.prices]
flat = ["0.538", "0.588", "0.838"]

[plans.zhejiang-tou]
tier_bounds = ["2760", "4800"]
periods = ["00:00=valley", "09:00=peak", "22:00=valley"]
[plans.zhejiang-tou.prices]
peak = ["0.600", "0.650", "0.900"]
valley = ["0.300", "0.350", "0.600"]
"""


def _jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def build_town(directory: Path) -> str:
    """Replay the town into a fresh embedded ClickHouse under ``directory``; its DSN."""
    inputs = directory / "in"
    inputs.mkdir(parents=True)
    opens = [
        {
            "type": "open",
            "ts": "2026-06-01T00:00:00+08:00",
            "opening_balance": "100.00",
            "district": DISTRICTS[a["account_id"]],
            **a,
        }
        for a in ACCOUNTS
    ]
    _jsonl(inputs / "accounts.jsonl", opens)
    _jsonl(
        inputs / "readings.jsonl",
        [{"meter_id": m, "ts": ts, "energy_kwh": e} for m, ts, e in READINGS],
    )
    dsn = f"chdb://{directory / 'clickhouse'}"
    subprocess.run([*WATTPAY, "replay", str(inputs), "--clickhouse", dsn, "--quiet"], check=True)
    return dsn
