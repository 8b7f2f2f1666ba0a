"""A replay counts its input lines as it splits them (its progress and its totals)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.replay_files import count_lines, input_lines, input_texts

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


def _lines_of(content: bytes) -> list[bytes]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "readings.jsonl"
        path.write_bytes(content)
        return list(input_lines(path))


def _split(content: bytes) -> list[bytes]:
    """Lines as ``wc -l`` sees them, plus a last one without its newline."""
    lines = content.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"x", b"{}", b"\xff"]), max_size=40))
def test_any_bytes_split_into_the_same_lines(parts: list[bytes]) -> None:
    content = b"".join(parts)
    assert _lines_of(content) == _split(content)


def test_lines_longer_than_a_read_come_back_whole() -> None:
    for content in (
        b"a" * (3 * MIB + 5) + b"\nb\n" + b"c" * MIB,  # over four reads, then a last line
        b"\n" + b"d" * (2 * MIB) + b"\n",
        b"e" * (MIB - 1) + b"\n" + b"f" * (MIB + 1),
    ):
        assert _lines_of(content) == _split(content)


def _texts_of(content: bytes) -> list[bytes | str]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "readings.jsonl"
        path.write_bytes(content)
        return list(input_texts(path))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"x", b"{}", b"\xff", b"\xc3\xa9"]), max_size=40))
def test_the_merge_reads_the_same_lines_as_text_where_they_are_ascii(parts: list[bytes]) -> None:
    content = b"".join(parts)
    texts = _texts_of(content)
    assert [t.encode("ascii") if isinstance(t, str) else t for t in texts] == _split(content)
    if content.isascii():
        assert all(isinstance(t, str) for t in texts)


def test_a_block_with_another_byte_stays_bytes_and_the_next_is_text_again() -> None:
    first = b"a\n\xff\n" + b"x" * MIB  # the first read ends inside a long ASCII line
    texts = _texts_of(first + b"\nb\n" + b"c" * MIB + b"\nd\n")
    assert texts[:2] == [b"a", b"\xff"]
    assert texts[2:] == ["x" * MIB, "b", "c" * MIB, "d"]
