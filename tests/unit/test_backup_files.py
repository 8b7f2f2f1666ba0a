"""`wattpay backup` and `restore` of a stopped installation: what is copied, what is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wattpay.backup import (
    BackupError,
    _append_tail,
    _running_clickhouse,
    restore_backup,
    restored_clickhouse_problem,
    take_backup,
)
from wattpay.cli import main


def installation(root: Path) -> tuple[Path, Path]:
    """A state directory and a ClickHouse directory as a stopped `up` leaves them."""
    state, clickhouse = root / ".wattpay", root / "clickhouse"
    (state / "s3" / "m1234" / "snapshots").mkdir(parents=True)
    (state / "s3" / "tansu_1.dat").write_bytes(b"\0volume")
    (state / "s3" / "filerldb2").mkdir()
    (state / "s3" / "filerldb2" / "000001.log").write_bytes(b"journal")  # data, not a log
    (state / "s3" / "ports.json").write_text("{}")
    (state / "s3" / "weed.log").write_text("noise")
    (state / "recovery").mkdir()
    (state / "recovery" / "part-0.sqlite3").write_bytes(b"snapshot")
    (state / "up.lock").write_text("")
    (state / "broker.pid").write_text("1 1\n")
    (clickhouse / "store" / "abc").mkdir(parents=True)
    (clickhouse / "store" / "abc" / "data.bin").write_bytes(b"rows")
    (clickhouse / "data" / "default").mkdir(parents=True)
    (clickhouse / "data" / "default" / "ledger").symlink_to("../../store/abc")
    return state, clickhouse


def test_a_stopped_installation_is_copied_without_its_runtime_files(tmp_path: Path) -> None:
    state, clickhouse = installation(tmp_path)
    report = take_backup(state, tmp_path / "copy", f"chdb://{clickhouse}")
    assert not report.running and report.frozen_seconds == 0
    copied = {str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*")}
    assert {
        "state/s3/tansu_1.dat",
        "state/s3/filerldb2/000001.log",
        "state/s3/m1234/snapshots",
        "state/recovery/part-0.sqlite3",
        "clickhouse/store/abc/data.bin",
        "clickhouse/data/default/ledger",
        "backup.json",
    } <= copied
    for runtime in ("up.lock", "broker.pid", "s3/ports.json", "s3/weed.log"):
        assert f"state/{runtime}" not in copied
    assert (tmp_path / "copy" / "clickhouse/data/default/ledger").readlink() == Path(
        "../../store/abc"
    )
    assert not (state / "up.json").exists() and (state / "up.lock").read_text() == ""

    manifest = restore_backup(
        tmp_path / "copy", tmp_path / "new" / "state", tmp_path / "new" / "ch"
    )
    assert manifest["clickhouse"] == str(clickhouse)
    assert (tmp_path / "new/state/recovery/part-0.sqlite3").read_bytes() == b"snapshot"
    assert (tmp_path / "new/ch/data/default/ledger/data.bin").read_bytes() == b"rows"


def test_restore_refuses_a_directory_in_use_and_what_is_not_a_backup(tmp_path: Path) -> None:
    state, clickhouse = installation(tmp_path)
    take_backup(state, tmp_path / "copy", f"chdb://{clickhouse}")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(tmp_path / "copy", state, None)
    with pytest.raises(BackupError, match="not empty"):
        take_backup(state, tmp_path / "copy", f"chdb://{clickhouse}")
    with pytest.raises(BackupError, match="not a wattpay backup"):
        restore_backup(tmp_path / "example", tmp_path / "elsewhere", None)
    (tmp_path / "copy" / "backup.json").write_text(json.dumps({"format": 1, "state_format": "0"}))
    with pytest.raises(BackupError, match="state format 0"):
        restore_backup(tmp_path / "copy", tmp_path / "elsewhere", None)
    (tmp_path / "copy" / "backup.json").write_bytes(b"\xff{[")
    with pytest.raises(BackupError, match="not valid JSON"):
        restore_backup(tmp_path / "copy", tmp_path / "elsewhere", None)
    assert not (tmp_path / "elsewhere").exists()


def test_the_commands_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["backup", str(tmp_path / "copy"), "--state-dir", str(tmp_path / "none")]) == 2
    assert "no wattpay state directory" in capsys.readouterr().err
    (tmp_path / "memory").mkdir()
    assert main(["backup", str(tmp_path / "copy"), "--state-dir", str(tmp_path / "memory")]) == 2
    assert "no embedded broker store" in capsys.readouterr().err
    assert main(["restore", str(tmp_path), "--state-dir", str(tmp_path / "new")]) == 2
    assert "not a wattpay backup" in capsys.readouterr().err


def test_a_grown_volume_gets_only_its_new_bytes_and_a_rewritten_one_is_refused(
    tmp_path: Path,
) -> None:
    volume, copy = tmp_path / "tansu_1.dat", tmp_path / "copy.dat"
    volume.write_bytes(b"SUPERBLK" + b"a" * 10_000)
    copy.write_bytes(volume.read_bytes())
    with volume.open("ab") as grown:
        grown.write(b"b" * 5_000)
    assert _append_tail(volume, copy)
    assert copy.read_bytes() == volume.read_bytes()
    volume.write_bytes(b"COMPACTD" + b"a" * 20_000)  # compacted: a new file, other bytes
    assert not _append_tail(volume, copy)
    volume.write_bytes(b"SUPERBLK" + b"a" * 100)  # shorter than the copy
    assert not _append_tail(volume, copy)


def test_the_clickhouse_of_a_running_up_is_found_in_its_state_file(tmp_path: Path) -> None:
    assert _running_clickhouse({"clickhouse_dir": str(tmp_path)}) == tmp_path
    assert _running_clickhouse({"clickhouse": "http://db:8123/x", "pid": 1}) is None
    absolute = {"clickhouse": f"chdb://{tmp_path}/ch", "pid": os.getpid()}
    assert _running_clickhouse(absolute) == tmp_path / "ch"
    relative = {"clickhouse": "chdb://./.wattpay/clickhouse", "pid": os.getpid()}
    assert _running_clickhouse(relative) == Path.cwd() / ".wattpay/clickhouse"


def test_up_on_a_restored_state_dir_needs_its_restored_clickhouse(tmp_path: Path) -> None:
    state, clickhouse = installation(tmp_path)
    take_backup(state, tmp_path / "copy", f"chdb://{clickhouse}")
    new_state, new_clickhouse = tmp_path / "new" / ".wattpay", tmp_path / "new" / "ch"
    restore_backup(tmp_path / "copy", new_state, new_clickhouse)
    assert restored_clickhouse_problem(new_state, f"chdb://{new_clickhouse}") is None
    problem = restored_clickhouse_problem(new_state, f"chdb://{tmp_path / 'empty'}")
    assert problem is not None and f"--clickhouse chdb://{new_clickhouse}" in problem
    assert restored_clickhouse_problem(new_state, "http://db:8123/x") is None
    assert (
        restored_clickhouse_problem(state, f"chdb://{tmp_path / 'empty'}") is None
    )  # not restored
    take_backup(new_state, tmp_path / "again", f"chdb://{new_clickhouse}")
    assert not (tmp_path / "again" / "state" / "restored.json").exists()
