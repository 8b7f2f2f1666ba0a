"""Meters on Kafka: readings out, relay commands in, their outcomes out (SPEC S2, S7, S13).

``KafkaPublisher`` gives the poller (and anything else speaking the ``Publisher`` protocol) a
Kafka destination. ``run_executor`` is the command service: it reads the meter-commands
topic, switches relays through ``CommandExecutor`` and publishes each outcome to the
meter-command-results topic keyed by meter id (both under the configured prefix). A
command's offset is committed only once its outcome is delivered (write, then commit), so a
crash re-applies at most the last batch; that is harmless, as the executor re-confirms a
repeated command_id instead of switching again, and consumers de-duplicate outcomes by
command_id (S7).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from billing.decoding import decode_json
from config.settings import DEFAULT_TOPIC_PREFIX, Settings
from ingest.clock import SimClock
from ingest.executor import RESULTS_TOPIC, CommandExecutor
from ingest.modbus import ModbusClient
from ingest.registers import MeterEntry, Registry
from sinks.kafka import (
    Consumer,
    DeliveryError,
    JsonProducer,
    KafkaException,
    Message,
    assign_committed,
    commit_positions,
    is_end_of_partition,
    kafka_config,
    new_consumer,
    partitions_of,
)

COMMANDS = "meter-commands"
RESULTS = RESULTS_TOPIC
EXECUTOR_GROUP = "wattpay-executor"
BATCH = 100  # commands taken from the topic at once (applied concurrently across meters)
IDLE_SECONDS = 0.05  # pause between polls of an empty topic
FLUSH_SECONDS = 0.5  # one delivery wait; the stop event is checked between waits
_log = logging.getLogger(__name__)


class KafkaPublisher:
    """The ``Publisher`` protocol on a ``JsonProducer``: ``prefix`` + logical topic, text keys.

    ``flush`` raises ``DeliveryError`` when a message was not confirmed in time.
    """

    def __init__(
        self, config: Mapping[str, str], prefix: str, *, flush_timeout: float = 30.0
    ) -> None:
        self.producer = JsonProducer(config, flush_timeout=flush_timeout)
        self.prefix = prefix

    def __enter__(self) -> KafkaPublisher:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.producer.send(self.prefix + topic, key or None, value)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        """Release the client; anything not flushed is dropped."""
        self.producer.close()


@dataclass
class ExecutorStats:
    """What the command service has done, for metrics and tests."""

    commands: int = 0
    ok: int = 0
    failed: int = 0
    bad_messages: int = 0
    delivery_retries: int = 0
    committed: int = 0  # commands whose offsets are committed


async def run_executor(
    settings_or_config: Settings | Mapping[str, str],
    registry: Registry | Sequence[MeterEntry],
    *,
    stop: threading.Event | asyncio.Event,
    client: ModbusClient | None = None,
    topic_prefix: str | None = None,
    clock: SimClock | None = None,
    attempts: int = 4,
    backoff: float = 0.2,
    stats: ExecutorStats | None = None,
) -> ExecutorStats:
    """Apply meter commands from Kafka to relays until ``stop`` is set; return the counts.

    ``topic_prefix`` defaults to the settings' prefix (the default prefix for a plain client
    config). Without ``client`` a ``ModbusClient`` is made here and closed at the end. The
    partitions are assigned directly from the committed offsets of group
    ``wattpay-executor`` (the beginning when none are), so run one executor per topic. A
    batch in progress when ``stop`` is set is finished, delivered and committed first.
    """
    if isinstance(settings_or_config, Settings):
        config = kafka_config(settings_or_config)
        prefix = settings_or_config.topic_prefix if topic_prefix is None else topic_prefix
    else:
        config = dict(settings_or_config)
        prefix = DEFAULT_TOPIC_PREFIX if topic_prefix is None else topic_prefix
    meters = registry.meters if isinstance(registry, Registry) else tuple(registry)
    if clock is None and isinstance(registry, Registry) and registry.clock is not None:
        clock = SimClock.from_spec(registry.clock)  # results stamped in the meters' time
    stats = stats if stats is not None else ExecutorStats()
    own_client = client is None
    modbus = client if client is not None else ModbusClient()
    executor = CommandExecutor(meters, modbus, clock=clock, attempts=attempts, backoff=backoff)
    publisher = KafkaPublisher(config, prefix)
    consumer = new_consumer(config, EXECUTOR_GROUP, extra={"enable.auto.offset.store": "false"})
    service = _Service(executor, publisher, consumer, RESULTS, stop, stats)
    try:
        if await _assign(consumer, prefix + COMMANDS, stop):
            await service.run()
    finally:
        consumer.close()
        publisher.close()
        if own_client:
            await modbus.close()
    return stats


async def _assign(consumer: Consumer, topic: str, stop: threading.Event | asyncio.Event) -> bool:
    """Assign every partition of ``topic`` at its committed offset; wait for the topic."""
    waited = False
    while not stop.is_set():
        partitions = partitions_of(consumer, topic, timeout=5)
        if partitions:
            assign_committed(consumer, topic, partitions)
            _log.info("executing commands from %s (%d partitions)", topic, len(partitions))
            return True
        if not waited:
            _log.warning("waiting for topic %s to exist", topic)
            waited = True
        await asyncio.sleep(0.5)
    return False


class _Service:
    """The consume → apply → publish → commit loop of ``run_executor``."""

    def __init__(
        self,
        executor: CommandExecutor,
        publisher: KafkaPublisher,
        consumer: Consumer,
        results_topic: str,
        stop: threading.Event | asyncio.Event,
        stats: ExecutorStats,
    ) -> None:
        self.executor = executor
        self.publisher = publisher
        self.consumer = consumer
        self.results_topic = results_topic
        self.stop = stop
        self.stats = stats

    async def run(self) -> None:
        while not self.stop.is_set():
            batch = [m for m in self.consumer.consume(BATCH, timeout=0) if self._usable(m)]
            if not batch:
                await asyncio.sleep(IDLE_SECONDS)
                continue
            # Same meter → same key → same partition, in order; the executor's per-meter
            # lock is FIFO, so one meter's commands are applied in their topic order.
            results = await asyncio.gather(*(self._apply(m) for m in batch))
            if not await self._deliver(results):
                return  # stopped before delivery: not committed, so redelivered on restart
            await self._commit(batch)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if not is_end_of_partition(error):
            _log.warning("meter commands: %s", error)
        return False

    async def _apply(self, message: Message) -> dict[str, Any]:
        self.stats.commands += 1
        command = _command(message)
        if command is None:
            self.stats.bad_messages += 1
            key = message.key()
            meter_id = key.decode("utf-8", "replace") if key else ""
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
            except DeliveryError as err:
                if self.stop.is_set():
                    _log.warning("stopping with undelivered command results: %s", err)
                    return False
                if err.failures:  # rejected or expired: send again (consumers de-duplicate)
                    self.stats.delivery_retries += 1
                    _log.warning("%s; sending again in %.1f s", err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    self._send(results)
            await asyncio.sleep(0)

    def _send(self, results: Sequence[dict[str, Any]]) -> None:
        for result in results:
            self.publisher.publish(self.results_topic, result["meter_id"], result)

    async def _commit(self, batch: Sequence[Message]) -> None:
        positions: dict[tuple[str, int], int] = {}
        for message in batch:
            where = (message.topic(), message.partition())
            positions[where] = max(positions.get(where, 0), message.offset() + 1)
        for attempt in range(3):
            try:
                commit_positions(self.consumer, positions)
                break
            except KafkaException as err:  # a lost commit only means a harmless re-apply
                _log.warning("committing command offsets failed (%s), attempt %d", err, attempt)
                await asyncio.sleep(0.2)
        else:
            return
        self.stats.committed += len(batch)


def _command(message: Message) -> dict[str, Any] | None:
    """The command object of a message, or None when it is not a UTF-8 JSON object.

    Decoded like billing's input: deep nesting or a lone surrogate (which no encoder of the
    result would take) makes it malformed instead of raising.
    """
    try:
        text = (message.value() or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    value, _problem = decode_json(text)
    return value if isinstance(value, dict) else None
