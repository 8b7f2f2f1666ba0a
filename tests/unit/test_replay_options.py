"""``wattpay replay`` refuses cluster options that would leave a process waiting for ever."""

from pathlib import Path

import pytest

from wattpay.cli import main


@pytest.mark.parametrize(
    "options",
    [["--processes", "0"], ["--workers", "0"], ["--process-id", "1"], ["--addresses", "a:1"]],
)
def test_impossible_cluster_options_are_refused_at_once(
    options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", str(tmp_path), "--clickhouse", f"chdb://{tmp_path / 'ch'}", *options])
    assert code == 2
    assert "wattpay replay:" in capsys.readouterr().err
    assert not (tmp_path / "ch").exists()  # refused before anything was created
