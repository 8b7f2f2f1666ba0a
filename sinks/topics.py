"""Topic outputs written as JSON Lines files, one per topic (``wattpay replay``'s ``DIR/out``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.outputs import DLQ, METER_COMMANDS, NOTIFICATIONS, PAYMENT_REQUESTS, TopicMessage

OUTPUT_TOPICS = (NOTIFICATIONS, METER_COMMANDS, PAYMENT_REQUESTS, DLQ)


# Characters that ``str.splitlines`` (and some JSON Lines readers) take for line breaks but
# JSON leaves unescaped; they can only occur inside strings, where the escape means the same.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def encode_message(message: TopicMessage) -> str:
    """One topic message as a JSON line (key order as built, UTF-8 text kept).

    Every line break inside strings is escaped, so the file splits into the same lines
    whichever way a reader splits it.
    """
    return json.dumps(message.value, ensure_ascii=False).translate(_LINE_BREAKS)


class _TopicFilePartition(StatefulSinkPartition[TopicMessage, int]):
    """Appends one topic's messages to its file; the state is the byte offset written."""

    def __init__(self, path: Path, resume_offset: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        if resume_offset is not None:
            self._file.seek(resume_offset)
            self._file.truncate()

    def write_batch(self, items: list[TopicMessage]) -> None:
        self._file.writelines(encode_message(m) + "\n" for m in items)
        self._file.flush()

    def snapshot(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class TopicFileSink(FixedPartitionedSink[TopicMessage, int]):
    """Writes each output topic to ``directory/<prefix><topic>.jsonl``."""

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
        return _TopicFilePartition(self.directory / f"{self.prefix}{for_part}.jsonl", resume_state)


def topic_file(directory: Path, topic: str, prefix: str) -> Path:
    """Where a replay writes one topic's messages."""
    return directory / f"{prefix}{topic}.jsonl"
