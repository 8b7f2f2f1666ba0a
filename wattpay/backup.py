"""``wattpay backup`` and ``wattpay restore``: a consistent copy of an installation, elsewhere.

A backup holds the state directory of ``wattpay up`` (the broker's S3 store with every topic
and committed offset, the billing flow's recovery snapshots, the monthly jobs' output) and the
embedded ClickHouse directory. A running installation is copied in two passes: the first while
it runs, the second, of what changed since, while every one of its processes is stopped
(SIGSTOP, then SIGCONT). The copy is therefore the state that a SIGKILL of the whole system at
that instant would leave, which ``up`` recovers from with nothing lost or billed twice
(tests/integration/test_crash.py): billing resumes from its snapshot and re-reads its inputs
after it, the loader re-writes the facts after its committed offsets, and every repeated row and
message carries the id it had.

``restore`` copies a backup into a new state directory and ClickHouse directory; ``wattpay up``
on them carries on from there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISLNK, S_ISREG

from config.errors import OperatorError
from pipelines.recovery import STATE_FORMAT
from wattpay.instance import LOCK_FILE, STATE_FILE, claim_state_dir, running_instance

MANIFEST = "backup.json"
BACKUP_FORMAT = 1
STATE = "state"
CLICKHOUSE = "clickhouse"
RESTORED = "restored.json"
"""Written by `restore` in the new state directory: where the restored ClickHouse went."""
# Files that describe the processes of one run, not its data: never copied.
RUNTIME_FILES = frozenset(
    {
        LOCK_FILE,
        STATE_FILE,
        "broker.pid",
        "s3/weed.pid",
        "s3/ports.json",
        "billing.log",
        "s3/weed.log",
        RESTORED,
    }
)
APPENDED = frozenset({".dat", ".idx"})
"""The store's files that are only ever written at their end (volumes and their indexes)."""
RECENT_NS = 2_000_000_000
"""A file modified this close to the first pass is copied again while frozen (mtime resolution)."""
THAW_AFTER_SECONDS = 120.0
"""A watchdog resumes the installation this long after the freeze if the backup itself dies."""


class BackupError(OperatorError):
    """A backup or restore that cannot be done as asked; the message says why."""


@dataclass
class Source:
    """What one tree of the backup is copied from."""

    name: str
    root: Path
    exclude: frozenset[Path] = frozenset()
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Relative path -> (size, mtime_ns) as stat'ed just before the first pass copied it."""


@dataclass
class BackupReport:
    """What a backup copied and how long the installation was stopped for it."""

    target: Path
    running: bool
    files: int
    bytes: int
    frozen_seconds: float
    clickhouse: str


def clickhouse_directory(dsn: str) -> Path | None:
    """The directory of an embedded chdb DSN (absolute), or None for a ClickHouse server."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme.lower() != "chdb":
        return None
    return Path(os.path.abspath(os.path.expanduser(rest.partition("?")[0])))


def take_backup(state_dir: Path, target: Path, clickhouse_dsn: str) -> BackupReport:
    """Copy the installation of ``state_dir`` (running or not) into the new directory ``target``."""
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        raise BackupError(f"no wattpay state directory at {state_dir}")
    if not (state_dir / "s3").is_dir():
        raise BackupError(
            f"{state_dir} holds no embedded broker store: topics in memory cannot be copied, "
            "and a Kafka cluster's are backed up with the cluster's own tools"
        )
    _require_empty(target, "backup directory")
    instance = running_instance(state_dir)
    clickhouse = clickhouse_directory(clickhouse_dsn)
    if instance is not None:  # the one the running `up` writes, wherever it was started from
        clickhouse = _running_clickhouse(instance)
    if clickhouse is not None and not clickhouse.is_dir():
        raise BackupError(f"no ClickHouse data at {clickhouse}")
    exclude = {state_dir / name for name in RUNTIME_FILES}
    if clickhouse is not None and clickhouse.is_relative_to(state_dir):
        exclude.add(clickhouse)  # copied as a tree of its own
    sources = [Source(STATE, state_dir, frozenset(exclude))]
    if clickhouse is not None:
        sources.append(Source(CLICKHOUSE, clickhouse))
    target.mkdir(parents=True, exist_ok=True)
    started = time.time_ns()
    if instance is None:
        lock = claim_state_dir(state_dir)  # no `up` may start while the files are copied
        try:
            for source in sources:
                _copy_pass(source, target / source.name)
        finally:
            lock.release()
        frozen = 0.0
    else:
        for source in sources:
            _copy_pass(source, target / source.name)
        with _frozen(_processes(state_dir, int(str(instance["pid"])))) as clock:
            for source in sources:
                _sync_pass(source, target / source.name, started - RECENT_NS)
        frozen = clock.seconds
        if frozen >= THAW_AFTER_SECONDS:  # the watchdog may have resumed them mid-copy
            raise BackupError(
                f"the second pass took {frozen:.0f}s, longer than the processes may stay "
                f"stopped ({THAW_AFTER_SECONDS:.0f}s); {target} is not a backup, take it again"
            )
    files, size = _tree_size(target)
    manifest = {
        "format": BACKUP_FORMAT,
        "state_format": STATE_FORMAT,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "state_dir": str(state_dir),
        "clickhouse": str(clickhouse) if clickhouse is not None else "server",
        "running": instance is not None,
        "frozen_seconds": round(frozen, 3),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return BackupReport(
        target=target,
        running=instance is not None,
        files=files,
        bytes=size,
        frozen_seconds=frozen,
        clickhouse=manifest["clickhouse"],
    )


def _running_clickhouse(instance: dict[str, object]) -> Path | None:
    """The chdb directory of a running ``up`` (None for a server), from its ``up.json``.

    An ``up.json`` without ``clickhouse_dir`` (an older release) has the DSN as given, which
    may be relative to the directory that ``up`` runs in.
    """
    if instance.get("clickhouse_dir"):
        return Path(str(instance["clickhouse_dir"]))
    dsn = str(instance.get("clickhouse", ""))
    scheme, _, rest = dsn.partition("://")
    if scheme.lower() != "chdb":
        return None
    path = Path(os.path.expanduser(rest.partition("?")[0]))
    if path.is_absolute():
        return path
    return Path(os.readlink(f"/proc/{instance['pid']}/cwd")) / path


def restore_backup(source: Path, state_dir: Path, clickhouse_dir: Path | None) -> dict[str, str]:
    """Copy the backup ``source`` into a new ``state_dir`` and ``clickhouse_dir``; its manifest."""
    manifest = read_manifest(source)
    _require_empty(state_dir, "state directory")
    has_clickhouse = manifest["clickhouse"] != "server"
    if has_clickhouse:
        if clickhouse_dir is None:
            clickhouse_dir = state_dir / CLICKHOUSE
        _require_empty(clickhouse_dir, "ClickHouse directory")
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / STATE, state_dir, symlinks=True, dirs_exist_ok=True)
    if has_clickhouse and clickhouse_dir is not None:
        clickhouse_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / CLICKHOUSE, clickhouse_dir, symlinks=True, dirs_exist_ok=True)
        restored = {"clickhouse": str(clickhouse_dir.resolve()), "taken_at": manifest["taken_at"]}
        (state_dir / RESTORED).write_text(json.dumps(restored) + "\n", encoding="utf-8")
    return manifest


def restored_clickhouse_problem(state_dir: Path, dsn: str) -> str | None:
    """Why ``up`` must not start on a restored state directory with this DSN, if it must not.

    The restored ClickHouse belongs with the restored topics and snapshots: an ``up`` on an
    empty chdb directory elsewhere would bill on, but its tables would lack everything up to
    the backup.
    """
    try:
        expected = Path(
            json.loads((state_dir / RESTORED).read_text(encoding="utf-8"))["clickhouse"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    configured = clickhouse_directory(dsn)
    if configured is None or configured.resolve() == expected.resolve():
        return None
    if configured.is_dir() and any(configured.iterdir()):
        return None  # a ClickHouse with data, named on purpose
    return (
        f"{state_dir} was restored from a backup with its ClickHouse in {expected}, but the "
        f"configured ClickHouse {configured} is empty: start with --clickhouse chdb://{expected}"
    )


def read_manifest(source: Path) -> dict[str, str]:
    """The manifest of a backup directory, checked; BackupError says what is wrong."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except OSError:
        raise BackupError(f"{source} is not a wattpay backup (no {MANIFEST})") from None
    except ValueError:
        raise BackupError(f"{source / MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{source / MANIFEST} is not a backup this wattpay can restore")
    if manifest.get("state_format") != STATE_FORMAT:
        raise BackupError(
            f"the backup's recovery snapshots have state format {manifest.get('state_format')}, "
            f"this wattpay reads {STATE_FORMAT}: restore it with the release that took it"
        )
    if not (source / STATE).is_dir():
        raise BackupError(f"{source} holds no {STATE}/ directory")
    return manifest


def _require_empty(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"the {what} {path} exists and is not empty; give a new one")


def _walk(source: Source, target: Path | None = None) -> Iterator[tuple[str, Path]]:
    """Relative path and path of every file and symlink under the source, skipping excluded.

    With ``target``, every directory is made there too (empty ones included).
    """
    for directory, dirs, files in os.walk(source.root):
        base = Path(directory)
        dirs[:] = [d for d in dirs if base / d not in source.exclude]
        if target is not None:
            (target / base.relative_to(source.root)).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (base / d).is_symlink()]:
            path = base / name
            if path in source.exclude:
                continue
            yield str(path.relative_to(source.root)), path


def _copy_one(path: Path, destination: Path) -> tuple[int, int] | None:
    """Copy a file or symlink; its (size, mtime_ns) before the copy, or None if it vanished."""
    try:
        stat = path.lstat()
        if not (S_ISREG(stat.st_mode) or S_ISLNK(stat.st_mode)):
            return None  # a socket or a pipe of a running server: not data
        destination.parent.mkdir(parents=True, exist_ok=True)
        if S_ISLNK(stat.st_mode):
            destination.unlink(missing_ok=True)
            destination.symlink_to(os.readlink(path))
        else:
            shutil.copyfile(path, destination)
    except FileNotFoundError:  # removed meanwhile (a merged ClickHouse part, a temporary file)
        return None
    return stat.st_size, stat.st_mtime_ns


def _copy_pass(source: Source, target: Path) -> None:
    """First pass, while the installation runs: copy everything."""
    for relative, path in _walk(source, target):
        stat = _copy_one(path, target / relative)
        if stat is not None:
            source.seen[relative] = stat


def _sync_pass(source: Source, target: Path, recent_ns: int) -> None:
    """Second pass, frozen: copy what changed or is recent, drop what is gone."""
    present: set[str] = set()
    for relative, path in _walk(source, target):
        present.add(relative)
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        if source.seen.get(relative) != (stat.st_size, stat.st_mtime_ns) or (
            stat.st_mtime_ns >= recent_ns
        ):
            appended = (
                source.name == STATE
                and relative.startswith("s3/")
                and path.suffix in APPENDED
                and _append_tail(path, target / relative)
            )
            if not appended:
                _copy_one(path, target / relative)
    for relative in set(source.seen) - present:
        (target / relative).unlink(missing_ok=True)
    # A directory gone since the first pass (a merged ClickHouse part) is not left behind empty.
    for directory, _dirs, _files in os.walk(target, topdown=False):
        path = Path(directory)
        if path != target and not (source.root / path.relative_to(target)).is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _append_tail(path: Path, destination: Path, check: int = 4096) -> bool:
    """Bring a copy of a file that only grows up to date by appending what it lacks.

    The store's volumes (``.dat``) and their indexes (``.idx``) are written at their end, so
    while frozen only their new bytes need copying, not whole volumes. The copy's first bytes
    (a volume's superblock) and its last ``check`` bytes must still match the file, or the
    file was rewritten (a compaction) and False says to copy it whole.
    """
    try:
        copied = destination.stat().st_size
        with path.open("rb") as original, destination.open("r+b") as copy:
            original.seek(0, os.SEEK_END)
            if original.tell() < copied:
                return False
            for start, length in ((0, min(8, copied)), (max(0, copied - check), check)):
                original.seek(start)
                copy.seek(start)
                if original.read(length) != copy.read(length):
                    return False
            original.seek(copied)
            copy.seek(copied)
            shutil.copyfileobj(original, copy, 1 << 20)
    except OSError:
        return False
    return True


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if not path.is_symlink():
                files += 1
                size += path.stat().st_size
    return files, size


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _processes(state_dir: Path, up_pid: int) -> list[int]:
    """The processes to stop, writers first: ``up`` and its billing flow, the broker, the store."""
    servers = [_pid_file(state_dir / "broker.pid"), _pid_file(state_dir / "s3" / "weed.pid")]
    writers = [up_pid] + [pid for pid in _children(up_pid) if pid not in servers]
    return writers + [pid for pid in servers if pid is not None]


def _wait_stopped(pid: int, patience: float = 5.0) -> None:
    """Wait until every thread of ``pid`` is stopped (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            states = {
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                for task in Path(f"/proc/{pid}/task").iterdir()
            }
        except OSError:  # a thread ended meanwhile, or the process did
            if not Path(f"/proc/{pid}").exists():
                return
            continue
        if states <= {"T", "t", "Z", "X"}:
            return
        time.sleep(0.005)
    raise BackupError(f"process {pid} did not stop within {patience:.0f}s; nothing was copied")


@dataclass
class _Clock:
    seconds: float = 0.0


@contextmanager
def _frozen(pids: list[int]) -> Iterator[_Clock]:
    """Stop ``pids`` in order and resume them in reverse, whatever happens meanwhile.

    A watchdog in a session of its own resumes them after `THAW_AFTER_SECONDS` should this
    process die while they are stopped.
    """
    watchdog = subprocess.Popen(  # noqa: S603 - our interpreter, our own code
        [
            sys.executable,
            "-c",
            "import os, signal, sys, time\n"
            f"time.sleep({THAW_AFTER_SECONDS})\n"
            "for pid in map(int, sys.argv[1:]):\n"
            "    try: os.kill(pid, signal.SIGCONT)\n"
            "    except OSError: pass\n",
            *map(str, pids),
        ],
        start_new_session=True,
    )
    clock = _Clock()
    started = time.monotonic()
    stopped: list[int] = []
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            stopped.append(pid)
        for pid in stopped:
            _wait_stopped(pid)
        yield clock
    finally:
        for pid in reversed(stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue
        clock.seconds = time.monotonic() - started
        watchdog.kill()
        watchdog.wait()
