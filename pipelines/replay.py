"""The replay flow: a directory of JSONL inputs in, ClickHouse rows and topic files out (S11).

``wattpay replay`` builds it here and runs it with ``pipelines.cluster``. In a cluster, the
first process (``leader``) writes ClickHouse and the topic files (the embedded ClickHouse
opens in one process only). Every process reads, merges and routes the files itself
(``pipelines.replay_source``) and bills its own share of the accounts, keyed by order
bucket, so no reading crosses processes; only their rows go to the first.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TextIO

from bytewax.dataflow import Dataflow

from billing.engine import Share
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
    process_id: int = 0,
    ready: Future[Any] | None = None,
) -> Dataflow:
    """The billing dataflow over ``directory``: rows to ClickHouse, messages to ``DIR/out``.

    S14.16: with a relay results file, only its results confirm cuts; without, a grace does.
    In a cluster whose accounts keys' places are known (2, 4 or 8 workers in all), every
    process reads the files and bills its own accounts (``process_share``); otherwise the
    ``reader`` reads and routes for all. ``ready``: what the inserts wait for (the tables
    being migrated meanwhile, ``store.clickhouse.open_migrated``).
    """
    rules = replace(settings.rules, command_results=has_command_results(directory))
    share = process_share(processes, workers, process_id)
    source = ReplaySource(
        directory,
        rules,
        accounts_key(processes, workers),
        progress=progress if share is None or process_id == 0 else None,
        local=reader,
        share=None if share is None else (f"replay-{process_id}", share),
    )
    return build_routed_flow(
        rules,
        source=source,
        rows=ClickHouseSink(
            settings.clickhouse_dsn,
            writers=workers if leader else 0,
            max_rows=settings.batch_rows,
            max_seconds=REPLAY_INSERT_SECONDS,
            ready=ready,
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

WRITER_SHARE = (2, 3)
"""In a cluster, the first process's workers bill 2 accounts for every 3 of another's.

Every process reads the files, and the first one also writes every row to ClickHouse and
the topic files (its insert thread serializes the columns holding the interpreter lock).
Measured on a 2-process replay of 1,104,783 readings (BENCHMARKS.md, step 13): 2 for
every 3 took 7.6–8.0 s, 3 for every 4 and 1 for 1 7.9–8.3 s, 1 for every 2 8.1–8.4 s.
"""


def process_share(processes: int, workers: int, process_id: int) -> Share | None:
    """The accounts keys process ``process_id`` bills when every process reads the files.

    Bucket b's key is on worker b mod n for n = 2, 4 and 8 workers in all
    (``pipelines.routing``), and a process's workers are numbered together, so each
    process's own partition hands only its own keys on: no reading crosses processes. The
    first process also emits the refusals. None for one process or another count of workers.
    """
    total = processes * workers
    if processes == 1 or total not in (2, 4, 8):
        return None
    keys = frozenset(
        key for bucket, key in enumerate(ORDER_KEYS) if (bucket % total) // workers == process_id
    )
    return Share(keys, designated=process_id == 0)


def accounts_key(processes: int, workers: int) -> Callable[[str], str]:
    """How the replay keys an account: one key per worker, fewer accounts where rows are written.

    Every key is a call of the accounts step per chunk read and a batch of rows to turn into
    columns, so a worker gets one key for all its accounts: with one worker in all, 5–8 %
    less time than a key per order bucket (BENCHMARKS.md, step 14). The order buckets' names
    put bucket b on worker b mod n for n = 2, 4 and 8 workers (``pipelines.routing``), so
    bucket w's name is worker w's key; in a cluster the first process writes ClickHouse and
    the topic files, so its workers get fewer accounts (``WRITER_SHARE``). For other counts
    of workers, where the names' places are not known, the order buckets' own keys. The keys
    never outlive the run (a replay is not recovered), so they can depend on the layout.
    """
    total = processes * workers
    if total not in (1, 2, 4, 8):
        return order_key
    table: list[str] = []
    for bucket in range(len(ORDER_KEYS)):
        weight = 1 if processes == 1 else WRITER_SHARE[0 if bucket % total < workers else 1]
        table += [ORDER_KEYS[bucket % total]] * weight
    return partial(_weighted_key, tuple(table))


@lru_cache(maxsize=1 << 16)
def _weighted_key(table: tuple[str, ...], account_id: str) -> str:
    return table[bucket_of(account_id, len(table))]


def _columns(rows: list[Row]) -> dict[str, Columns]:
    """A batch's rows as columns per table, made where they were billed."""
    return encode_built(rows)
