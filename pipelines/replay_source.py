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
from billing.engine import Share, route, route_all
from billing.merge import Merged, ReadingLine
from billing.messages import READINGS
from billing.outputs import Output
from billing.rules import BillingRules
from pipelines.replay_files import count_lines, merged_inputs
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

    def advance(self, inputs: list[Merged]) -> None:
        """Count a batch and report if it is time (nothing to count with no stream)."""
        self.done += len(inputs)
        if self.stream is None:
            return
        self.readings += sum(
            1 for item in inputs if isinstance(item, ReadingLine) or item[0].topic == READINGS
        )
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
    inputs: list[Merged],
    directory: MeterDirectory,
    rules: BillingRules,
    key_of: Callable[[str], str],
    share: Share | None = None,
) -> list[SourceItem]:
    """Route a chunk in input order: one batch per accounts key, then the refusals' outputs.

    With ``share``, only this process's share of them (``billing.engine.route_all``).
    """
    keyed, refused = route_all(inputs, directory, rules, key_of, AccountEntries, share)
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
        share: Share | None,
    ) -> None:
        light = share is not None
        self._inputs: Iterator[Merged] = merged_inputs(directory, rules, light=light)
        self._batch = batch
        self._directory = MeterDirectory()
        self._rules = rules
        self._key_of = key_of
        self._share = share
        # Owners and claimed payment ids depend on every input before: a resumed partition
        # routes what it skips again, handing nothing on (a reading changes neither).
        for item in islice(self._inputs, skip):
            if not isinstance(item, ReadingLine):
                route(item[0], self._directory, rules, item[1])
        self._position = skip
        self._progress = progress

    def next_batch(self) -> list[SourceItem]:
        batch = list(islice(self._inputs, self._batch))
        if not batch:
            raise StopIteration
        self._position += len(batch)
        self._progress.advance(batch)
        return route_chunk(batch, self._directory, self._rules, self._key_of, self._share)

    def snapshot(self) -> int:
        return self._position


class ReplaySource(FixedPartitionedSource[SourceItem, int]):
    """The merged input files of a replay directory as one partition, routed as read.

    ``key_of`` names the accounts key of an account; ``batch`` is the lines of a chunk.
    ``share``: in a cluster where every process reads the files, this process's share and
    the name of its partition (``billing.engine.route_all``); without, the one partition is
    in the process that is ``local``.
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
        share: tuple[str, Share] | None = None,
    ) -> None:
        self.batch = batch
        self.share = share
        self.directory = directory
        self.rules = rules
        self.key_of = key_of
        self.progress = progress
        self.local = local

    def list_parts(self) -> list[str]:
        """The one partition, in the process of a cluster that reads the files (``local``).

        With a share, this process's own partition: every process reads the files.
        """
        if self.share is not None:
            return [self.share[0]]
        return ["replay"] if self.local else []

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        # The lines are counted for the progress report only (a pass over every file).
        total = 0 if self.progress is None else count_lines(self.directory)
        progress = Progress(total, self.progress)
        share = None if self.share is None else self.share[1]
        return _ReplayPartition(
            self.directory, resume_state or 0, progress, self.rules, self.key_of, self.batch, share
        )
