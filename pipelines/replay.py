"""The replay flow: a directory of JSONL inputs in, ClickHouse rows and topic files out (S11).

``wattpay replay`` builds it here and runs it with ``pipelines.cluster``. In a cluster, the
first process (``leader``) writes ClickHouse and the topic files (the embedded ClickHouse
opens in one process only) and the last one (``reader``) reads, merges and routes the
files (``pipelines.replay_source``), so the two heaviest single-process parts run side by
side; the accounts, keyed by order bucket, spread over every worker of every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path
from typing import TextIO

from bytewax.dataflow import Dataflow

from billing.outputs import Row
from config.settings import Settings
from pipelines.billing import build_routed_flow
from pipelines.clickhouse_sink import ClickHouseSink
from pipelines.replay_files import has_command_results
from pipelines.replay_source import ReplaySource
from pipelines.routing import ORDER_KEYS, bucket_of, order_key
from pipelines.topic_files import TopicFileSink
from store.clickhouse import Columns, encode_built


def build_replay_flow(
    settings: Settings,
    directory: Path,
    *,
    leader: bool = True,
    reader: bool = True,
    workers: int = 1,
    processes: int = 1,
    progress: TextIO | None = None,
) -> Dataflow:
    """The billing dataflow over ``directory``: rows to ClickHouse, messages to ``DIR/out``.

    S14.16: with a relay results file, only its results confirm cuts; without, a grace does.
    """
    rules = replace(settings.rules, command_results=has_command_results(directory))
    return build_routed_flow(
        rules,
        source=ReplaySource(
            directory,
            rules,
            accounts_key(processes, workers),
            progress=progress,
            local=reader,
        ),
        rows=ClickHouseSink(
            settings.clickhouse_dsn,
            writers=workers if leader else 0,
            max_rows=settings.batch_rows,
            max_seconds=REPLAY_INSERT_SECONDS,
        ),
        messages=TopicFileSink(directory / "out", settings.topic_prefix, local=leader),
        topic_prefix=settings.topic_prefix,
        encode_rows=_columns,
    )


REPLAY_INSERT_SECONDS = 30.0
"""A replay inserts ``clickhouse.batch_rows`` rows at a time, or every 30 s, whichever first.

Not ``clickhouse.batch_seconds``: that bounds how long live rows wait to be seen, and a
replay bills 60,000 readings a second or more, so a second's wait made inserts of a third
the size. Every insert is a new part that chdb merges later: on a replay of 1,104,783
readings, inserts of 400,000 rows used 6–25 % less CPU than the second-long ones in each of
4 rounds (BENCHMARKS.md, step 9).
"""

READER_SHARE = (1, 3)
"""In a cluster, the reading process's workers bill 1 account for every 3 of another's.

Measured on a 2-process replay of 1,104,783 readings, in turns (BENCHMARKS.md, step 9):
1 for every 4 took 11.9–12.7 s with the first process the limit (12.1–12.6 CPU s against
the reading process's 9.0–9.7), 1 for every 3 took 11.5–11.7 s and 2 for every 5 took
11.3–11.7 s. Reading the files got cheaper (text lines, integer checks), so the reading
process now has room for more accounts than at step 6 (1 for every 4).
"""


def accounts_key(processes: int, workers: int) -> Callable[[str], str]:
    """How the replay keys an account: by order bucket, fewer of them where the files are read.

    The order buckets' names put bucket b on worker b mod n for n = 2, 4 and 8 workers
    (``pipelines.routing``), and the last process reads, merges and routes the files, so
    its workers get fewer accounts. The keys never outlive the run (a replay is not
    recovered), so they can depend on the layout.
    """
    total = processes * workers
    if processes == 1 or total not in (2, 4, 8):
        return order_key
    readers = range(total - workers, total)
    table: list[str] = []
    for bucket, key in enumerate(ORDER_KEYS):
        table += [key] * READER_SHARE[0 if bucket % total in readers else 1]
    return partial(_weighted_key, tuple(table))


@lru_cache(maxsize=1 << 16)
def _weighted_key(table: tuple[str, ...], account_id: str) -> str:
    return table[bucket_of(account_id, len(table))]


def _columns(rows: list[Row]) -> dict[str, Columns]:
    """A batch's rows as columns per table, made where they were billed."""
    return encode_built(rows)
