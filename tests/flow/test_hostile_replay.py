"""No input line stops a replay: every line is applied or rejected, its bytes kept (SPEC S9).

The whole hostile corpus (tests/data/hostile) on top of a small valid input through the
``wattpay replay`` command, a 10 MB line, and what counts as a line. Each corpus line alone,
and generated hostile lines, are replayed in tests/integration/test_hostile_replay.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipelines.replay_files import count_lines, input_lines
from tests.hostile import (
    ALL_TOPICS,
    WATTPAY,
    assert_only_rejected,
    base_lines,
    corpus,
    input_directory,
    outcome,
    replay_in_process,
)


def test_whole_corpus_at_once_through_the_command(tmp_path: Path) -> None:
    extra = {topic: corpus(topic) for topic in ALL_TOPICS}
    work = input_directory(tmp_path / "in", extra)
    dsn = f"chdb://{tmp_path / 'ch'}"
    done = subprocess.run(
        [*WATTPAY, "replay", str(work), "--clickhouse", dsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    total = count_lines(work)
    assert f"replay: {total}/{total} lines (100%)" in done.stderr
    result = outcome(work, dsn)
    expected = sorted(
        (f"{topic}:{base_lines(topic) + n}", line)
        for topic, lines in extra.items()
        for n, line in enumerate(lines, start=1)
    )
    assert [(r[0], r[1]) for r in result.rejected] == expected
    assert sorted((d[0], d[1]) for d in result.dlq) == expected
    assert result.readings == 2
    # However a reader splits the DLQ file into lines, it gets one per rejection.
    dlq = (work / "out" / "wattpay.dlq.jsonl").read_text(encoding="utf-8")
    assert len(dlq.splitlines()) == len(expected) == dlq.count("\n")


def test_a_ten_megabyte_line_is_rejected_whole(tmp_path: Path) -> None:
    line = (
        b'{"meter_id": "M1", "ts": "2026-03-01T03:00:00+08:00", "x": "'
        + b"\xe7\x94\xb5" * (10 * 2**20 // 3)
        + b'", "energy_kwh": 1e999}'
    )
    work = input_directory(tmp_path / "in", {"readings": [line]})
    code, dsn = replay_in_process(work)
    assert code == 0
    assert_only_rejected(work, dsn, "readings", [line])


def test_lines_are_what_wc_counts(tmp_path: Path) -> None:
    # "\r" does not split a line; an empty line is a line; an unterminated last line counts.
    work = input_directory(tmp_path / "in", {})
    with (work / "readings.jsonl").open("ab") as handle:
        handle.write(b"abc\rdef\n\n\r\n" + b'{"meter_id": "M1"}')
    odd = [b"abc\rdef", b"", b"\r", b'{"meter_id": "M1"}']
    assert list(input_lines(work / "readings.jsonl"))[2:] == odd
    assert count_lines(work) == 4 + len(odd)
    code, dsn = replay_in_process(work)
    assert code == 0
    assert_only_rejected(work, dsn, "readings", odd)


def test_crlf_lines_are_applied(tmp_path: Path) -> None:
    work = input_directory(tmp_path / "in", {})
    for name in ("accounts.jsonl", "payments.jsonl", "readings.jsonl"):
        path = work / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    code, dsn = replay_in_process(work)
    assert code == 0
    result = outcome(work, dsn)
    assert result.rejected == [] and result.readings == 2
