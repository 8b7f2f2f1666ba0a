"""No input line stops a replay: every line is applied or rejected, its bytes kept (SPEC S9).

Each line of the hostile corpus (tests/data/hostile) is replayed alone on top of a small valid
input through the ``wattpay replay`` command; hypothesis adds generated hostile lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files import count_lines, input_lines
from tests.hostile import base_lines, corpus, corpus_cases, input_directory, outcome
from tests.hostile_strategies import hostile_lines
from wattpay.cli import main

WATTPAY = [sys.executable, "-m", "wattpay.cli"]
ALL_TOPICS = ("accounts", "payments", "readings")


def replay_in_process(work: Path) -> tuple[int, str]:
    dsn = f"chdb://{work / 'ch'}"
    return main(["replay", str(work), "--clickhouse", dsn, "--quiet"]), dsn


def assert_only_rejected(work: Path, dsn: str, topic: str, lines: list[bytes]) -> None:
    """Exactly ``lines`` (appended to ``topic``) are rejected, bytes intact; the base applied."""
    result = outcome(work, dsn)
    first = base_lines(topic) + 1
    expected = sorted((f"{topic}:{first + i}", line) for i, line in enumerate(lines))
    assert [(r[0], r[1]) for r in result.rejected] == expected
    assert sorted((d[0], d[1]) for d in result.dlq) == expected
    assert [r[2] for r in result.rejected] == [d[2] for d in sorted(result.dlq, key=lambda d: d[0])]
    assert result.readings == 2  # the base readings, and nothing the hostile lines added
    assert "topup" in result.ledger_kinds
    assert result.ledger_kinds.count("charge") == 1  # one closed day: 2026-03-01, at the end


@pytest.mark.slow
@pytest.mark.parametrize(("topic", "number"), corpus_cases())
def test_each_corpus_line_alone_is_rejected(topic: str, number: int, tmp_path: Path) -> None:
    line = corpus(topic)[number - 1]
    work = input_directory(tmp_path / "in", {topic: [line]})
    code, dsn = replay_in_process(work)
    assert code == 0
    assert_only_rejected(work, dsn, topic, [line])


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
    assert len(result.rejected) == sum(len(lines) for lines in extra.values())
    assert result.readings == 2


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


@pytest.mark.slow
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(topic=st.sampled_from(ALL_TOPICS), lines=st.lists(hostile_lines(), min_size=1, max_size=6))
def test_generated_hostile_lines_through_the_command(
    topic: str, lines: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = input_directory(tmp_path_factory.mktemp("hostile"), {topic: lines})
    dsn = f"chdb://{work / 'ch'}"
    done = subprocess.run(
        [*WATTPAY, "replay", str(work), "--clickhouse", dsn, "--quiet"],
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_only_rejected(work, dsn, topic, lines)
