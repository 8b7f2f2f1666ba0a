"""Bytewax source over a replay directory, in processing order, with progress reporting."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from billing.messages import READINGS, Envelope
from pipelines.replay_files import count_lines, merged_envelopes

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

    def advance(self, envelopes: list[Envelope]) -> None:
        """Count a batch and report if it is time."""
        self.done += len(envelopes)
        self.readings += sum(1 for e in envelopes if e.topic == READINGS)
        now = time.monotonic()
        if self.stream is not None and (now - self.last >= self.every or self.done == self.total):
            self.last = now
            rate = self.readings / max(now - self.started, 1e-9)
            share = 100 * self.done / self.total if self.total else 100.0
            print(
                f"replay: {self.done}/{self.total} lines ({share:.0f}%), {rate:,.0f} readings/s",
                file=self.stream,
                flush=True,
            )


class _ReplayPartition(StatefulSourcePartition[Envelope, int]):
    def __init__(self, directory: Path, skip: int, progress: Progress) -> None:
        self._envelopes: Iterator[Envelope] = islice(merged_envelopes(directory), skip, None)
        self._position = skip
        self._progress = progress

    def next_batch(self) -> list[Envelope]:
        batch = list(islice(self._envelopes, BATCH))
        if not batch:
            raise StopIteration
        self._position += len(batch)
        self._progress.advance(batch)
        return batch

    def snapshot(self) -> int:
        return self._position


class ReplaySource(FixedPartitionedSource[Envelope, int]):
    """The merged input files of a replay directory as one ordered partition."""

    def __init__(
        self, directory: Path, *, progress: TextIO | None = sys.stderr, local: bool = True
    ) -> None:
        self.directory = directory
        self.progress = progress
        self.local = local

    def list_parts(self) -> list[str]:
        """The one partition, in the process of a cluster that reads the files (``local``)."""
        return ["replay"] if self.local else []

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        progress = Progress(count_lines(self.directory), self.progress)
        return _ReplayPartition(self.directory, resume_state or 0, progress)
