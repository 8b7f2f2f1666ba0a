"""The Modbus poller: every meter once per interval, published as S2 readings (SPEC S13).

Rounds fall on the clock (every 15 minutes from local midnight by default), on wall time or
on a simulated clock shared with ``wattpay simulate``. A round reads all meters at once; the
client's pool per host:port bounds how many requests are in flight. A reading carries the
round's aligned time. A failed poll publishes nothing (the next reading covers the gap) and
is counted by meter model and error kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from billing.messages import READINGS
from meters.clock import SimClock
from meters.modbus import MeterSample, ModbusClient, ModbusError
from meters.registers import MeterEntry

READINGS_TOPIC = READINGS  # logical; a publisher adds the configured prefix
_log = logging.getLogger(__name__)
DEFAULT_INTERVAL = timedelta(minutes=15)


class Publisher(Protocol):
    """Where readings and command results go (Kafka, a file, memory).

    Callers name topics logically (``readings``); a publisher that writes to real topics or
    files adds the configured prefix.
    """

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Queue one message on logical ``topic``."""

    def flush(self, timeout: float | None = None) -> None:
        """Deliver everything queued so far."""


class MemoryPublisher:
    """Keeps every message (with its logical topic) in a list, for tests and embedding."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.messages.append((topic, key, value))

    def flush(self) -> None:
        pass

    def values(self, topic: str) -> list[dict[str, Any]]:
        """The values published to ``topic``, in order."""
        return [value for t, _, value in self.messages if t == topic]


class JsonlPublisher:
    """Appends each topic's values to ``directory/<prefix><topic>.jsonl``, one object a line."""

    def __init__(self, directory: str | Path, prefix: str) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self._files: dict[str, IO[str]] = {}

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        if topic not in self._files:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.prefix}{topic}.jsonl"
            self._files[topic] = path.open("a", encoding="utf-8")
        self._files[topic].write(json.dumps(value, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        for file in self._files.values():
            file.flush()

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


@dataclass
class PollStats:
    """Poll counters, kept in one place so a metrics exporter can read them."""

    rounds: int = 0
    polls: int = 0
    readings: int = 0
    skipped_rounds: int = 0
    failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, kind) → n
    last_round_seconds: float = 0.0

    def failed(self, model: str, kind: str) -> None:
        self.failures[model, kind] = self.failures.get((model, kind), 0) + 1

    @property
    def failed_polls(self) -> int:
        return sum(self.failures.values())


def reading_message(meter: MeterEntry, ts: datetime, sample: MeterSample) -> dict[str, Any]:
    """The S2 reading for one sample: decimal strings, ISO time with its offset."""
    message: dict[str, Any] = {
        "meter_id": meter.meter_id,
        "ts": ts.isoformat(),
        "energy_kwh": f"{sample.energy_kwh:.3f}",
        "source": "modbus",
    }
    if sample.power_w is not None:
        message["power_w"] = f"{sample.power_w:.1f}"
    return message


def next_tick(now: datetime, interval: timedelta) -> datetime:
    """The first instant ≥ ``now`` on the grid of ``interval`` steps from local midnight."""
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = -((midnight - now) // interval)  # ceiling division of timedeltas
    return midnight + steps * interval


class Poller:
    """Polls ``meters`` round after round and publishes their readings."""

    def __init__(
        self,
        meters: Sequence[MeterEntry],
        client: ModbusClient,
        publisher: Publisher,
        *,
        topic: str = READINGS_TOPIC,
        interval: timedelta = DEFAULT_INTERVAL,
        clock: SimClock | None = None,
        stats: PollStats | None = None,
    ) -> None:
        self.meters = list(meters)
        self.client = client
        self.publisher = publisher
        self.topic = topic
        self.interval = interval
        self.clock = clock or SimClock()
        self.stats = stats or PollStats()

    async def poll_round(self, ts: datetime) -> list[dict[str, Any]]:
        """Read every meter once, publish the readings stamped ``ts`` and return them."""
        started = time.perf_counter()
        samples = await asyncio.gather(*(self._poll(meter) for meter in self.meters))
        readings = [
            reading_message(meter, ts, sample)
            for meter, sample in zip(self.meters, samples, strict=True)
            if sample is not None
        ]
        for reading in readings:
            self.publisher.publish(self.topic, reading["meter_id"], reading)
        self.publisher.flush()
        self.stats.rounds += 1
        self.stats.readings += len(readings)
        self.stats.last_round_seconds = time.perf_counter() - started
        return readings

    async def _poll(self, meter: MeterEntry) -> MeterSample | None:
        self.stats.polls += 1
        try:
            return await self.client.read_sample(meter)
        except ModbusError as err:
            self.stats.failed(meter.model.name, err.kind)
            return None

    async def run(self, rounds: int | None = None) -> None:
        """Poll on the clock's grid until cancelled, or for ``rounds`` rounds."""
        tick = next_tick(self.clock.now(), self.interval)
        done = 0
        while rounds is None or done < rounds:
            await self.clock.sleep_until(tick)
            readings = await self.poll_round(tick)
            done += 1
            _log.info(
                "round %s: %d readings, %d of %d polls failed so far, %.3f s",
                tick.isoformat(),
                len(readings),
                self.stats.failed_polls,
                self.stats.polls,
                self.stats.last_round_seconds,
            )
            following = next_tick(self.clock.now(), self.interval)
            if following <= tick:
                following = tick + self.interval
            self.stats.skipped_rounds += (following - tick) // self.interval - 1
            tick = following
