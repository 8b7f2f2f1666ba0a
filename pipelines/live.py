"""The live billing flow: Kafka input topics in, topic messages and facts out (SPEC S2, S10).

    python -m bytewax.run "pipelines.live:build_live_flow()" -r RECOVERY_DIR

reads its settings like every wattpay command (``wattpay.toml``, ``WATTPAY_*``); the CLI
``wattpay billing`` runs the same factory with recovery on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

from bus.kafka import kafka_config
from bus.topics import BILLING_INPUTS
from config.settings import Settings, load_settings
from pipelines.billing import build_billing_flow
from pipelines.kafka_sinks import KafkaFactSink, KafkaMessageSink
from pipelines.kafka_source import MergedKafkaSource
from pipelines.metrics import Metrics


def build_live_flow(
    settings: Settings | None = None, *, fresh_topics: bool = False, metrics: Metrics | None = None
) -> Dataflow:
    """The billing dataflow on Kafka: accounts stay open; no day closes at end of input.

    ``fresh_topics``: the input topics were just created (an in-memory broker restarted), so
    reading starts at their beginning whatever position the recovery snapshot holds.
    """
    settings = settings or load_settings()
    config = kafka_config(settings)
    # Every snapshot of an account carries its duplicate memory: live keeps a shorter one.
    rules = replace(
        settings.rules,
        duplicate_memory=settings.live_duplicate_memory,
        reject_future=True,
        command_results=True,
    )
    return build_billing_flow(
        rules,
        source=MergedKafkaSource(
            config,
            {t.name: settings.topic(t.name) for t in BILLING_INPUTS},
            fresh_topics=fresh_topics,
            metrics=metrics,
        ),
        rows=KafkaFactSink(config, settings.topic_prefix),
        messages=KafkaMessageSink(config, settings.topic_prefix),
        close_at_eof=False,
        flow_id="wattpay-live-billing",
        metrics=metrics,
        topic_prefix=settings.topic_prefix,
        # Each account its own key: an epoch's snapshot holds only the accounts it touched.
        accounts_by_bucket=False,
    )


def run_live_flow(
    settings: Settings,
    recovery_dir: Path,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    epoch_seconds: float = 2.0,
    fresh_topics: bool = False,
    metrics: Metrics | None = None,
) -> None:
    """Run the live flow with crash recovery in ``recovery_dir`` until it is stopped."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    cli_main(
        build_live_flow(settings, fresh_topics=fresh_topics, metrics=metrics),
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=epoch_seconds),
        recovery_config=RecoveryConfig(str(recovery_dir)),
    )
