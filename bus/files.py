"""Topics as JSON Lines files: where a replay keeps a topic, and one message as one line."""

from __future__ import annotations

import json
from pathlib import Path

from billing.outputs import TopicMessage
from bus.topics import topic

# Characters that ``str.splitlines`` (and some JSON Lines readers) take for line breaks but
# JSON leaves unescaped; they can only occur inside strings, where the escape means the same.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def encode_message(message: TopicMessage) -> str:
    """One topic message as a JSON line (key order as built, UTF-8 text kept).

    Every line break inside strings is escaped, so the file splits into the same lines
    whichever way a reader splits it.
    """
    return json.dumps(message.value, ensure_ascii=False).translate(_LINE_BREAKS)


def topic_file(directory: Path, name: str, prefix: str) -> Path:
    """Where a replay writes one output topic's messages (``<prefix><topic>.jsonl``)."""
    return directory / topic(name).file_name(prefix)
