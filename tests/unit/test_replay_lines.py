"""A replay counts its input lines as it splits them (its progress and its totals)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.replay_files import count_lines, input_lines

MIB = 1 << 20


def _counted(content: bytes) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "readings.jsonl"
        path.write_bytes(content)
        return count_lines(Path(directory)), len(list(input_lines(path)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_count_as_many_lines_as_the_replay_reads(content: bytes) -> None:
    counted, read = _counted(content)
    assert counted == read


def test_lines_across_the_counting_chunks_count_once() -> None:
    for content in (
        b"x" * (MIB - 1) + b"\n",  # the newline the last byte of the first chunk
        b"x" * MIB + b"\n",  # the first byte of the second
        b"x" * MIB,  # a last line with no newline, a whole chunk long
        b"\n" * (MIB + 1),
        b"",
    ):
        counted, read = _counted(content)
        assert counted == read
