"""The meter clock: wall time, or an accelerated clock shared by a simulator and a poller.

A poller reads meters once per interval aligned to this clock; with ``speed`` above 1 it runs
faster than the wall, so a simulated day passes in minutes (SPEC S13).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, tzinfo

from billing.clock import LOCAL_ZONE
from meters.registers import ClockSpec


class SimClock:
    """Simulated time: reads ``start`` at wall time ``anchor`` and runs ``speed`` × faster.

    Wall time (``time.time()``) is used so that a simulator and a poller in different
    processes agree when they share ``start``, ``speed`` and ``anchor``.
    """

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        anchor: float | None = None,
        zone: tzinfo = LOCAL_ZONE,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.anchor = time.time() if anchor is None else anchor
        if start is None:
            start = datetime.fromtimestamp(self.anchor, zone)  # speed 1: plain wall time
        if start.tzinfo is None:
            raise ValueError("start must carry an offset")
        self.start = start.astimezone(zone)
        self.speed = speed
        self.zone = zone

    @classmethod
    def from_spec(cls, spec: ClockSpec) -> SimClock:
        return cls(spec.start, spec.speed, spec.anchor)

    def spec(self) -> ClockSpec:
        return ClockSpec(self.start, self.speed, self.anchor)

    def now(self) -> datetime:
        """The current simulated time, in the clock's zone."""
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def real_seconds(self, span: timedelta) -> float:
        """Wall-clock seconds that ``span`` of simulated time takes."""
        return span.total_seconds() / self.speed

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep until the simulated clock reaches ``moment``."""
        while (left := moment - self.now()) > timedelta(0):
            await asyncio.sleep(self.real_seconds(left))
