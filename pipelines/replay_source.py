"""Bytewax source over a replay directory: the inputs routed where they are read.

A replay's input is one ordered stream (S14.1) read by one process, and nothing in it is
ever recovered, so its source routes every message as the sequential reference does
(``billing.engine.route``: meter ownership, the lifecycle checks, payment ids) and hands
on, per chunk read, one batch per accounts key plus the outputs of the messages it
refused. What moves between steps is therefore a batch per key per chunk: no message
crosses a worker on its own, and readings cross processes as columns
(``pipelines.wire.AccountEntries``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from billing.directory import MeterDirectory
from billing.engine import route, route_all
from billing.messages import READINGS
from billing.outputs import Output
from billing.rules import BillingRules
from pipelines.replay_files import Input, count_lines, merged_inputs
from pipelines.wire import AccountEntries

BATCH = 2000


class Progress:
    """Prints done/total lines and readings per second at most every ``every`` seconds."""

    def __init__(self, total: int, stream: TextIO | None, every: float = 2.0) -> None:
        self.total = total
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.last = self.started
        self.done = 0
        self.readings = 0

    def advance(self, inputs: list[Input]) -> None:
        """Count a batch and report if it is time (nothing to count with no stream)."""
        self.done += len(inputs)
        if self.stream is None:
            return
        self.readings += [envelope.topic for envelope, _ in inputs].count(READINGS)
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.readings / max(now - self.started, 1e-9)
            share = 100 * self.done / self.total if self.total else 100.0
            print(
                f"replay: {self.done}/{self.total} lines ({share:.0f}%), {rate:,.0f} readings/s",
                file=self.stream,
                flush=True,
            )


SourceItem = tuple[str, AccountEntries] | list[Output]
"""What the source hands on: a batch for an accounts key, or the outputs of refusals."""


def route_chunk(
    inputs: list[Input],
    directory: MeterDirectory,
    rules: BillingRules,
    key_of: Callable[[str], str],
) -> list[SourceItem]:
    """Route a chunk in input order: one batch per accounts key, then the refusals' outputs."""
    keyed, refused = route_all(inputs, directory, rules, key_of, AccountEntries)
    items: list[SourceItem] = list(keyed.items())  # type: ignore[arg-type]
    if refused:
        items.append(refused)
    return items


class _ReplayPartition(StatefulSourcePartition[SourceItem, int]):
    def __init__(
        self,
        directory: Path,
        skip: int,
        progress: Progress,
        rules: BillingRules,
        key_of: Callable[[str], str],
        batch: int,
    ) -> None:
        self._inputs: Iterator[Input] = merged_inputs(directory, rules)
        self._batch = batch
        self._directory = MeterDirectory()
        self._rules = rules
        self._key_of = key_of
        # Owners and claimed payment ids depend on every input before: a resumed partition
        # routes what it skips again, handing nothing on.
        for envelope, reading in islice(self._inputs, skip):
            route(envelope, self._directory, rules, reading)
        self._position = skip
        self._progress = progress

    def next_batch(self) -> list[SourceItem]:
        batch = list(islice(self._inputs, self._batch))
        if not batch:
            raise StopIteration
        self._position += len(batch)
        self._progress.advance(batch)
        return route_chunk(batch, self._directory, self._rules, self._key_of)

    def snapshot(self) -> int:
        return self._position


class ReplaySource(FixedPartitionedSource[SourceItem, int]):
    """The merged input files of a replay directory as one partition, routed as read.

    ``key_of`` names the accounts key of an account; ``batch`` is the lines of a chunk.
    """

    def __init__(
        self,
        directory: Path,
        rules: BillingRules,
        key_of: Callable[[str], str],
        *,
        progress: TextIO | None = sys.stderr,
        local: bool = True,
        batch: int = BATCH,
    ) -> None:
        self.batch = batch
        self.directory = directory
        self.rules = rules
        self.key_of = key_of
        self.progress = progress
        self.local = local

    def list_parts(self) -> list[str]:
        """The one partition, in the process of a cluster that reads the files (``local``)."""
        return ["replay"] if self.local else []

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        progress = Progress(count_lines(self.directory), self.progress)
        return _ReplayPartition(
            self.directory, resume_state or 0, progress, self.rules, self.key_of, self.batch
        )
