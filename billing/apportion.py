"""Spreading a reading pair's consumption over time (SPEC S4 apportioning)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.clock import elapsed_us
from billing.numbers import div_round_half_up
from billing.state_pickle import constructor_reduce


@dataclass(slots=True, init=False)  # per reading; not frozen; init=False: billing/__init__.py
class Part:
    """Consumption in [start, end), in thousandths of a kWh."""

    start: datetime
    end: datetime
    milli_kwh: int

    def __init__(self, start: datetime, end: datetime, milli_kwh: int) -> None:
        self.start = start
        self.end = end
        self.milli_kwh = milli_kwh

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


def apportion(
    start: datetime, end: datetime, milli_kwh: int, cuts: Iterable[datetime]
) -> list[Part]:
    """Split ``milli_kwh`` used evenly over [start, end) at the given cut points.

    The energy up to the end of part i is round_half_up(total × elapsed_i ÷ span) to the
    0.001 kWh; each part is the difference of consecutive cumulative values, so the parts
    are never negative and always sum to the total exactly.
    """
    span = elapsed_us(start, end)
    if span <= 0:
        raise ValueError("apportioning needs end > start")
    points = sorted({c for c in cuts if start < c < end})
    parts: list[Part] = []
    previous_cum = 0
    previous_end = start
    for cut in [*points, end]:
        cum = (
            milli_kwh if cut is end else div_round_half_up(milli_kwh * elapsed_us(start, cut), span)
        )
        parts.append(Part(previous_end, cut, cum - previous_cum))
        previous_cum, previous_end = cum, cut
    return parts
