"""The command service on Kafka: meter-commands in, relays switched, outcomes out (SPEC S13).

Wires the meter gateway's command loop (``meters.meter_bus``) to the broker: commands are
read by consumer group ``wattpay-executor`` from its committed offsets (the beginning when
none are), outcomes published to the results topic; run one executor per topic.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

from bus.kafka import DeliveryError, KafkaException, KafkaPublisher, kafka_config, open_reader
from bus.topics import COMMANDS, RESULTS
from config.settings import DEFAULT_TOPIC_PREFIX, Settings
from meters.clock import SimClock
from meters.executor import CommandExecutor
from meters.meter_bus import EXECUTOR_GROUP, ExecutorStats, run_commands
from meters.modbus import ModbusClient
from meters.registers import MeterEntry, Registry


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
    config). Without ``client`` a ``ModbusClient`` is made here and closed at the end.
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
    feed = await asyncio.to_thread(
        open_reader, config, COMMANDS.full_name(prefix), EXECUTOR_GROUP, stop, strict=False
    )
    try:
        if feed is not None:
            await run_commands(
                executor,
                feed,
                publisher,
                RESULTS.name,
                stop=stop,
                delivery_errors=(DeliveryError,),
                commit_errors=(KafkaException,),
                stats=stats,
            )
    finally:
        if feed is not None:
            feed.close()
        publisher.close()
        if own_client:
            await modbus.close()
    return stats
