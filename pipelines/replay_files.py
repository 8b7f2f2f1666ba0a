"""Replay input: the JSONL files merged into processing order (SPEC S11, S14.1).

Each file is a stream in its own line order (like a topic partition). The merge repeatedly
applies the message at the head of the stream with the earliest timestamp (ties: accounts,
payments, readings, relay results); a line with no valid timestamp is applied as soon as it
is at the head. The relay results file is optional (S2): without it, cuts are confirmed by
the grace period of S14.16 (``has_command_results``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from billing.merge import Merged, merge_streams
from billing.messages import Envelope
from billing.rules import BillingRules
from bus.topics import BILLING_INPUTS, RESULTS

REPLAY_FILES = {t.name: t.file_name() for t in BILLING_INPUTS}
"""Every file a replay reads: the three inputs and the optional relay results."""
RESULTS_FILE = REPLAY_FILES[RESULTS.name]
INPUT_FILES = {name: file for name, file in REPLAY_FILES.items() if name != RESULTS.name}


def input_lines(path: Path) -> Iterator[bytes]:
    r"""The lines of an input file as bytes: split on b"\n" only, so ``wc -l`` counts them.

    A ``\r`` inside a line does not split it, an empty line is a line, and a last line
    without its newline still counts (``wc -l`` plus one). Read a MiB at a time and split
    in C; a line longer than that is joined once, however long.
    """
    for lines in _line_blocks(path):
        yield from lines.split(b"\n")


def input_texts(path: Path) -> Iterator[bytes | str]:
    """``input_lines``, but the lines of an ASCII block come as text, decoded once a block.

    Text is what the merge reads the usual reading line from (``reading_text``); the lines
    of a block with any other byte stay bytes.
    """
    for lines in _line_blocks(path):
        yield from lines.decode("ascii").split("\n") if lines.isascii() else lines.split(b"\n")


def _line_blocks(path: Path) -> Iterator[bytes]:
    r"""A file's bytes in blocks of whole lines without their last newline (a MiB or so).

    The last block is what follows the last newline, if anything. A line longer than a
    read is joined once, however long.
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        pending: list[bytes] = []  # the start of a line that goes on in the next block
        while block := handle.read(1 << 20):
            end = block.rfind(b"\n")
            if end < 0:
                pending.append(block)
                continue
            if pending:
                pending.append(block[:end])
                yield b"".join(pending)
            else:
                yield block[:end]
            pending = [block[end + 1 :]]
        last = b"".join(pending)
        if last:
            yield last


def count_lines(directory: Path) -> int:
    """How many input lines a replay directory holds (every line is applied or rejected).

    Counted as ``input_lines`` splits them: each newline, plus a last line without one.
    """
    total = 0
    for name in REPLAY_FILES.values():
        path = directory / name
        if path.exists():
            last = b"\n"
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):  # newlines counted in C, a MiB at a time
                    total += chunk.count(b"\n")
                    last = chunk[-1:]
            total += last != b"\n"
    return total


def merged_envelopes(directory: Path) -> Iterator[Envelope]:
    """All input envelopes of a replay directory in processing order."""
    for envelope, _ in merged_inputs(directory):  # type: ignore[misc] - never light
        yield envelope


def merged_inputs(
    directory: Path, rules: BillingRules | None = None, *, light: bool = False
) -> Iterator[Merged]:
    """All input lines of a replay directory in processing order (``billing.merge``).

    With ``rules``, the usual reading lines come with their reading, parsed straight from
    their bytes; ``light``, those of text come as ``billing.merge.ReadingLine``.
    """
    streams = [
        (topic, enumerate(input_texts(directory / name), start=1))
        for topic, name in REPLAY_FILES.items()
    ]
    return merge_streams(streams, rules, light=light)


def has_command_results(directory: Path) -> bool:
    """True when a replay directory has a relay results file (S14.16 confirms cuts by it)."""
    return (directory / RESULTS_FILE).exists()
