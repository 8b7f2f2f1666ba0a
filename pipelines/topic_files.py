"""The Bytewax sink of a replay's topic outputs: one JSON Lines file per topic (``DIR/out``)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.outputs import TopicMessage
from bus.files import encode_message, topic_file
from bus.topics import BILLING_OUTPUTS, names

OUTPUT_TOPICS = tuple(names(BILLING_OUTPUTS))


class _TopicFilePartition(StatefulSinkPartition[list[TopicMessage], int]):
    """Appends one topic's messages to its file; the state is the byte offset written."""

    def __init__(self, path: Path, resume_offset: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        if resume_offset is not None:
            self._file.seek(resume_offset)
            self._file.truncate()

    def write_batch(self, items: list[list[TopicMessage]]) -> None:
        self._file.writelines(encode_message(m) + "\n" for batch in items for m in batch)
        self._file.flush()

    def snapshot(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class TopicFileSink(FixedPartitionedSink[list[TopicMessage], int]):
    """Writes batches of each output topic's messages to ``directory/<prefix><topic>.jsonl``."""

    def __init__(self, directory: Path, prefix: str, *, local: bool = True) -> None:
        self.directory = directory
        self.prefix = prefix
        self.local = local

    def list_parts(self) -> list[str]:
        """Every topic's file, in the one process of a cluster that writes them (``local``)."""
        return list(OUTPUT_TOPICS) if self.local else []

    def part_fn(self, item_key: str) -> int:
        # Bytewax indexes into the sorted set of all partition names.
        return sorted(OUTPUT_TOPICS).index(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _TopicFilePartition:
        return _TopicFilePartition(topic_file(self.directory, for_part, self.prefix), resume_state)
