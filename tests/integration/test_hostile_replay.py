"""Each hostile line alone, and generated hostile lines, through ``wattpay replay`` (SPEC S9).

Every corpus line (tests/data/hostile) is appended alone to a small valid input: the replay
exits 0 with exactly that line rejected and its bytes kept, in ``rejected`` and the DLQ file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import (
    ALL_TOPICS,
    WATTPAY,
    assert_only_rejected,
    corpus,
    corpus_cases,
    input_directory,
    replay_in_process,
)
from tests.hostile_strategies import hostile_lines


@pytest.mark.slow
@pytest.mark.parametrize(("topic", "number"), corpus_cases())
def test_each_corpus_line_alone_is_rejected(topic: str, number: int, tmp_path: Path) -> None:
    line = corpus(topic)[number - 1]
    work = input_directory(tmp_path / "in", {topic: [line]})
    code, dsn = replay_in_process(work)
    assert code == 0
    assert_only_rejected(work, dsn, topic, [line])


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
