"""The command service: relay commands in, switched, their outcomes out (SPEC S7, S13).

``run_commands`` reads commands from a ``CommandFeed`` (the meter-commands topic, read by a
consumer group), switches relays through ``CommandExecutor`` and publishes each outcome to
the results topic keyed by meter id. A command's offset is committed only once its outcome
is delivered (write, then commit), so a crash re-applies at most the last batch; that is
harmless, as the executor re-confirms a repeated command_id instead of switching again, and
consumers de-duplicate outcomes by command_id (S7). The feed and the publisher are handed in
(``wattpay.executor_service`` wires them to Kafka), so this package knows no broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from billing.decoding import decode_json
from meters.executor import CommandExecutor
from meters.poller import Publisher

EXECUTOR_GROUP = "wattpay-executor"
BATCH = 100  # commands taken from the topic at once (applied concurrently across meters)
IDLE_SECONDS = 0.05  # pause between polls of an empty topic
FLUSH_SECONDS = 0.5  # one delivery wait; the stop event is checked between waits
_log = logging.getLogger(__name__)


class CommandRecord(Protocol):
    """One command as read: its partition, offset, key and raw value."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def value(self) -> bytes: ...


class CommandFeed(Protocol):
    """A consumer group's reading of the commands topic (``bus.kafka.PartitionReader``)."""

    def poll(self, max_messages: int, timeout: float) -> Sequence[CommandRecord]: ...
    def commit(self, next_offsets: Mapping[int, int]) -> None: ...


@dataclass
class ExecutorStats:
    """What the command service has done, for metrics and tests."""

    commands: int = 0
    ok: int = 0
    failed: int = 0
    bad_messages: int = 0
    delivery_retries: int = 0
    committed: int = 0  # commands whose offsets are committed


async def run_commands(
    executor: CommandExecutor,
    feed: CommandFeed,
    publisher: Publisher,
    results_topic: str,
    *,
    stop: threading.Event | asyncio.Event,
    delivery_errors: tuple[type[Exception], ...],
    commit_errors: tuple[type[Exception], ...],
    stats: ExecutorStats | None = None,
) -> ExecutorStats:
    """Apply commands from ``feed`` until ``stop`` is set; return the counts.

    A batch in progress when ``stop`` is set is finished, delivered and committed first.
    ``delivery_errors`` are what ``publisher.flush`` raises when a message was not confirmed
    (with a ``failures`` list); ``commit_errors`` what a failed commit raises.
    """
    stats = stats if stats is not None else ExecutorStats()
    service = _Service(executor, feed, publisher, results_topic, stop, stats)
    service.delivery_errors = delivery_errors
    service.commit_errors = commit_errors
    await service.run()
    return stats


class _Service:
    """The consume → apply → publish → commit loop of ``run_executor``."""

    def __init__(
        self,
        executor: CommandExecutor,
        feed: CommandFeed,
        publisher: Publisher,
        results_topic: str,
        stop: threading.Event | asyncio.Event,
        stats: ExecutorStats,
    ) -> None:
        self.executor = executor
        self.publisher = publisher
        self.feed = feed
        self.delivery_errors: tuple[type[Exception], ...] = ()
        self.commit_errors: tuple[type[Exception], ...] = ()
        self.results_topic = results_topic
        self.stop = stop
        self.stats = stats

    async def run(self) -> None:
        while not self.stop.is_set():
            batch = list(self.feed.poll(BATCH, 0))
            if not batch:
                await asyncio.sleep(IDLE_SECONDS)
                continue
            # Same meter → same key → same partition, in order; the executor's per-meter
            # lock is FIFO, so one meter's commands are applied in their topic order.
            results = await asyncio.gather(*(self._apply(m) for m in batch))
            if not await self._deliver(results):
                return  # stopped before delivery: not committed, so redelivered on restart
            await self._commit(batch)

    async def _apply(self, record: CommandRecord) -> dict[str, Any]:
        self.stats.commands += 1
        command = _command(record.value)
        if command is None:
            self.stats.bad_messages += 1
            meter_id = record.key or ""
            result = self._failed({"meter_id": meter_id}, "malformed", "not a UTF-8 JSON object")
        else:
            try:
                result = await self.executor.apply(command)
            except Exception as err:  # a bug must not stop every other meter's commands
                _log.exception("command %r failed unexpectedly", command.get("command_id"))
                result = self._failed(command, "internal", f"{type(err).__name__}: {err}")
        if result["ok"]:
            self.stats.ok += 1
        else:
            self.stats.failed += 1
            _log.warning(
                "command %s for %s failed: %s",
                result["command_id"],
                result["meter_id"],
                result.get("error"),
            )
        return result

    def _failed(self, command: Mapping[str, Any], error: str, detail: str) -> dict[str, Any]:
        """A failed outcome in the executor's shape, for what it could not even look at."""
        return {
            "command_id": str(command.get("command_id") or ""),
            "meter_id": str(command.get("meter_id") or ""),
            "ok": False,
            "ts": self.executor.clock.now().isoformat(timespec="milliseconds"),
            "error": error,
            "detail": detail,
        }

    async def _deliver(self, results: Sequence[dict[str, Any]]) -> bool:
        """Publish the outcomes and wait until the cluster confirms them (or ``stop``)."""
        self._send(results)
        delay = 0.5
        while True:
            try:
                self.publisher.flush(FLUSH_SECONDS)
                return True
            except self.delivery_errors as err:
                if self.stop.is_set():
                    _log.warning("stopping with undelivered command results: %s", err)
                    return False
                # Rejected or expired: send again (consumers de-duplicate by command_id).
                if getattr(err, "failures", None):
                    self.stats.delivery_retries += 1
                    _log.warning("%s; sending again in %.1f s", err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    self._send(results)
            await asyncio.sleep(0)

    def _send(self, results: Sequence[dict[str, Any]]) -> None:
        for result in results:
            self.publisher.publish(self.results_topic, result["meter_id"], result)

    async def _commit(self, batch: Sequence[CommandRecord]) -> None:
        positions: dict[int, int] = {}
        for record in batch:
            positions[record.partition] = max(positions.get(record.partition, 0), record.offset + 1)
        for attempt in range(3):
            try:
                self.feed.commit(positions)
                break
            except self.commit_errors as err:  # a lost commit only means a harmless re-apply
                _log.warning("committing command offsets failed (%s), attempt %d", err, attempt)
                await asyncio.sleep(0.2)
        else:
            return
        self.stats.committed += len(batch)


def _command(payload: bytes) -> dict[str, Any] | None:
    """The command object of a message, or None when it is not a UTF-8 JSON object.

    Decoded like billing's input: deep nesting or a lone surrogate (which no encoder of the
    result would take) makes it malformed instead of raising.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    value, _problem = decode_json(text)
    return value if isinstance(value, dict) else None
