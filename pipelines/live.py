"""The live billing flow: Kafka input topics in, topic messages and facts out (SPEC S2, S10).

    python -m bytewax.run "pipelines.live:build_live_flow()" -r RECOVERY_DIR

reads its settings like every wattpay command (``wattpay.toml``, ``WATTPAY_*``); the CLI
``wattpay billing`` runs the same factory with recovery on.
"""

from __future__ import annotations

from dataclasses import replace

from bytewax.dataflow import Dataflow

from config.settings import Settings, load_settings
from ingest.kafka import MergedKafkaSource
from pipelines.billing import build_billing_flow
from sinks.kafka import kafka_config
from sinks.live import KafkaFactSink, KafkaMessageSink
from sinks.metrics import Metrics

INPUT_TOPICS = ("accounts", "payments", "readings", "meter-command-results")
"""Relay results come from the command executor (S13); live, only they confirm a cut."""
OUTPUT_TOPICS = (
    "notifications",
    "meter-commands",
    "payment-requests",
    "dlq",
    "facts",
)


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
            config, {t: settings.topic(t) for t in INPUT_TOPICS}, fresh_topics=fresh_topics
        ),
        rows=KafkaFactSink(config, settings.topic_prefix),
        messages=KafkaMessageSink(config, settings.topic_prefix),
        close_at_eof=False,
        flow_id="wattpay-live-billing",
        metrics=metrics,
        topic_prefix=settings.topic_prefix,
    )
