"""The replay flow: a directory of JSONL inputs in, ClickHouse rows and topic files out (S11).

``wattpay replay`` builds it here and runs it with ``pipelines.cluster``. In a cluster, the
first process (``leader``) writes ClickHouse and the topic files (the embedded ClickHouse
opens in one process only) and the last one (``reader``) reads, merges and routes the
files (``pipelines.replay_source``), so the two heaviest single-process parts run side by
side; the accounts, keyed by order bucket, spread over every worker of every process.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TextIO

from bytewax.dataflow import Dataflow

from billing.outputs import Row
from config.settings import Settings
from pipelines.billing import build_routed_flow
from pipelines.clickhouse_sink import ClickHouseSink
from pipelines.replay_files import has_command_results
from pipelines.replay_source import ReplaySource
from pipelines.routing import order_key
from pipelines.topic_files import TopicFileSink
from store.clickhouse import Columns, encode_built


def build_replay_flow(
    settings: Settings,
    directory: Path,
    *,
    leader: bool = True,
    reader: bool = True,
    workers: int = 1,
    progress: TextIO | None = None,
) -> Dataflow:
    """The billing dataflow over ``directory``: rows to ClickHouse, messages to ``DIR/out``.

    S14.16: with a relay results file, only its results confirm cuts; without, a grace does.
    """
    rules = replace(settings.rules, command_results=has_command_results(directory))
    return build_routed_flow(
        rules,
        source=ReplaySource(directory, rules, order_key, progress=progress, local=reader),
        rows=ClickHouseSink(
            settings.clickhouse_dsn,
            writers=workers if leader else 0,
            max_rows=settings.batch_rows,
            max_seconds=settings.batch_seconds,
        ),
        messages=TopicFileSink(directory / "out", settings.topic_prefix, local=leader),
        topic_prefix=settings.topic_prefix,
        encode_rows=_columns,
    )


def _columns(rows: list[Row]) -> dict[str, Columns]:
    """A batch's rows as columns per table, made where they were billed."""
    return encode_built((row.table, row.values) for row in rows)
