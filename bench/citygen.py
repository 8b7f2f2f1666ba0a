"""A seed city's input, fast: account openings and quarter-hour registers of N households.

``wattpay example`` plays every household out against real load profiles, which is too slow
for a city (274,000 households × 96 readings a day). This generator streams the same message
formats (SPEC S2, as ``simulate.example`` writes them) from a few integers per meter:

- household ``i`` has account ``C{i:06d}`` and meter ``CM{i:06d}``; every fourth is on the
  time-of-use plan, the rest on the tiered plan; opening balances 50–300 yuan, except every
  fiftieth household, which opens with 24 yuan and crosses the 20-yuan low-balance threshold;
- its register starts between 1,000 and 10,000 kWh and grows every quarter hour by a
  daily load shape (night low, morning and evening peaks) scaled 0.5–2× per household,
  plus a deterministic jitter of ±20 Wh;
- registers are exact decimal text: 3 decimals, or 2 (floored) for every fifth meter.

The same arguments always give the same bytes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulate.example_output import energy_text  # noqa: E402
from simulate.scenarios import epoch  # noqa: E402
from simulate.wallet import iso  # noqa: E402

QUARTER = 900
# Wh per quarter hour of a typical household, from local midnight: low at night, a morning
# peak, a flat day and an evening peak (about 8.6 kWh a day at scale 1).
SHAPE_WH = [40] * 24 + [160] * 12 + [80] * 32 + [240] * 20 + [80] * 8


class City:
    """N households whose readings start at local time ``start`` (epoch second)."""

    def __init__(self, households: int, start: int) -> None:
        self.households = households
        self.start = start
        self.first_slot = (start - epoch(date(2026, 1, 1))) // QUARTER % 96
        self.registers = [1_000_000 + (i * 7919) % 9_000_000 for i in range(households)]
        self.scale = [50 + (i * 31) % 151 for i in range(households)]
        self.decimals = [2 if i % 5 == 4 else 3 for i in range(households)]
        self.slot = 0  # quarter hours since start whose registers are in ``registers``

    def account(self, i: int) -> str:
        """The ``open`` event of household ``i`` at ``start``, as a JSON line."""
        return (
            json.dumps(
                {
                    "type": "open",
                    "account_id": f"C{i:06d}",
                    "meter_id": f"CM{i:06d}",
                    "plan": "zhejiang-tou" if i % 4 == 0 else "zhejiang-tiered",
                    "ts": iso(self.start),
                    "opening_balance": "24.00" if i % 50 == 7 else f"{50 + (i * 13) % 251}.00",
                }
            )
            + "\n"
        )

    def accounts(self, first: int = 0, last: int | None = None) -> Iterator[tuple[str, str]]:
        """(account_id, line) of the openings of households ``first`` … ``last - 1``."""
        for i in range(first, self.households if last is None else last):
            yield f"C{i:06d}", self.account(i)

    def quarter(self, first: int = 0, last: int | None = None) -> Iterator[tuple[str, str]]:
        """(meter_id, line) of the current quarter's readings (``advance`` moves time on)."""
        ts = iso(self.start + self.slot * QUARTER)
        registers, decimals = self.registers, self.decimals
        for i in range(first, self.households if last is None else last):
            meter = f"CM{i:06d}"
            wh = energy_text(registers[i], decimals[i])
            yield meter, f'{{"meter_id": "{meter}", "ts": "{ts}", "energy_kwh": "{wh}"}}\n'

    def advance(self) -> None:
        """Move every register on by one quarter hour of consumption."""
        base = SHAPE_WH[(self.first_slot + self.slot) % 96]
        salt = self.slot * 2654435761
        registers, scale = self.registers, self.scale
        for i in range(self.households):
            jitter = ((i * 40503 + salt) >> 7) % 41 - 20
            registers[i] += max(base * scale[i] // 100 + jitter, 0)
        self.slot += 1


def write_day(out_dir: Path, households: int, day: date) -> dict[str, int]:
    """Write accounts, payments and readings of one city day into ``out_dir``; return counts.

    Every account opens at local midnight; each meter then reports 96 quarter-hour
    registers (00:00 … 23:45); every twentieth household tops up 100 yuan once that day.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    city = City(households, epoch(day))
    with (out_dir / "accounts.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(line for _, line in city.accounts())
    payers = sorted(
        ((i // 20) * 7 % 96 * QUARTER + 450 + i % 300, i) for i in range(0, households, 20)
    )
    with (out_dir / "payments.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for offset, i in payers:
            fh.write(
                json.dumps(
                    {
                        "type": "topup",
                        "payment_id": f"CP{i:06d}-{day.isoformat()}",
                        "account_id": f"C{i:06d}",
                        "amount": "100.00",
                        "channel": ("app", "alipay", "wechat", "bank", "counter")[i // 20 % 5],
                        "ts": iso(city.start + offset),
                    }
                )
                + "\n"
            )
    readings = 0
    with (out_dir / "readings.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for _ in range(96):
            lines = [line for _, line in city.quarter()]
            city.advance()
            fh.write("".join(lines))
            readings += len(lines)
    return {"accounts": households, "payments": len(payers), "readings": readings}
