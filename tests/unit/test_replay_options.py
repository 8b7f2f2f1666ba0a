"""``wattpay replay`` never leaves a process of its cluster waiting for ever."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bus.ports import free_port
from pipelines.cluster import Follower, is_listening, wait_for_first
from simulate.example import write_example
from wattpay.cli import main

WATTPAY = [sys.executable, "-m", "wattpay.cli"]


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


def _processes_naming(text: str) -> list[int]:
    """Running processes whose command line holds ``text`` (this test's own directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode("utf-8", "replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # ended meanwhile
    return found


@pytest.mark.parametrize("layout", ["3x1", "1x1", "1x2", "first of 2, by hand"])
def test_a_replay_whose_clickhouse_cannot_be_opened_ends_with_the_reason(
    tmp_path: Path, layout: str
) -> None:
    # The other processes are started before the first opens ClickHouse; when that fails
    # they are ended with it, and none is left waiting for a first process that never listens.
    # One process opens it while its flow starts reading: the flow ends with that reason. A
    # first process started by hand fails before it listens.
    (tmp_path / "readings.jsonl").write_text("{}\n", encoding="utf-8")
    unreachable = f"http://127.0.0.1:{free_port()}/"
    if layout == "first of 2, by hand":
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
        options = ["--process-id", "0", "--addresses", addresses]
    else:
        processes, workers = layout.split("x")
        options = ["--processes", processes, "--workers", workers]
    done = subprocess.run(
        [*WATTPAY, "replay", str(tmp_path), *options, "--clickhouse", unreachable],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot open ClickHouse" in done.stderr
    assert "panicked" not in done.stderr, done.stderr  # the reason alone, no engine's report
    assert _processes_naming(str(tmp_path)) == []


def test_a_follower_joins_once_the_first_process_listens() -> None:
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{first.getsockname()[1]}"
        assert not is_listening(address)  # bound, not yet listening
        first.listen()
        assert is_listening(address)
        wait_for_first(address, os.getppid())  # returns at once
    assert not is_listening(address)
    assert is_listening("10.0.0.1:9000")  # another host: left to Bytewax's own retry


def test_followers_end_when_the_first_process_dies_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "readings.jsonl").write_text("{}\n", encoding="utf-8")
    first = subprocess.Popen(
        [*WATTPAY, "replay", str(tmp_path), "--processes", "2", "--quiet"],
        env={**os.environ, "WATTPAY_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not [pid for pid in _processes_naming(str(tmp_path)) if pid != first.pid]:
            assert time.monotonic() < deadline, "no follower started"
            time.sleep(0.01)
        # Killed right after it forked its follower: before it listens, or while the follower
        # connects to it. The follower must not wait for a first process that is gone.
        first.kill()
        first.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _processes_naming(str(tmp_path)):
            assert time.monotonic() < deadline, "a follower outlived its first process"
            time.sleep(0.05)
    finally:
        first.kill()
        for pid in _processes_naming(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)


def test_followers_the_first_process_ends_itself_are_no_failure() -> None:
    # The watchdog ends the replay with exit 1 when a follower dies; a follower the first
    # process stopped itself (it could not open ClickHouse) must leave it its own exit code.
    script = """
import subprocess, sys, threading, time
from pipelines.cluster import Cluster, _end_if_one_fails
follower = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
cluster = Cluster(["127.0.0.1:1", "127.0.0.1:2"], [follower])
threading.Thread(target=_end_if_one_fails, args=(cluster,), daemon=True).start()
cluster.stop()
time.sleep(0.6)  # three of the watchdog's looks
sys.exit(2)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (2, "")


def test_a_forked_follower_is_polled_waited_for_and_killed_as_a_popen_is() -> None:
    exits = Follower(_forked(lambda: os._exit(3)))
    assert exits.wait() == 3
    assert exits.poll() == 3  # reaped once; asked again, the same code
    exits.kill()  # ended and waited for: nothing to end, no error

    sleeps = Follower(_forked(lambda: time.sleep(60)))
    assert sleeps.poll() is None
    sleeps.kill()
    assert sleeps.wait() == -signal.SIGKILL


def _forked(body: Callable[[], object]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def test_a_follower_that_dies_ends_the_replay_with_its_code(tmp_path: Path) -> None:
    # Every process of a cluster but the first is forked from it; the first's watchdog
    # notices one that dies while the flow runs, ends the others and says which.
    write_example(tmp_path / "input", households=200, days=20, seed=3)
    first = subprocess.Popen(
        [*WATTPAY, "replay", str(tmp_path / "input"), "--processes", "3", "--quiet"],
        env={**os.environ, "WATTPAY_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        children = Path(f"/proc/{first.pid}/task/{first.pid}/children")
        deadline = time.monotonic() + 60
        while len(followers := children.read_text().split()) < 2:  # noqa: PLR2004 - two followers
            assert time.monotonic() < deadline, "the followers did not start"
            time.sleep(0.005)
        os.kill(int(followers[0]), signal.SIGKILL)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 1
    assert "replay process 1 exited with code -9" in err
    assert _processes_naming(str(tmp_path)) == []


def test_a_cluster_is_not_forked_from_a_process_with_other_threads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readings.jsonl").write_text("{}\n", encoding="utf-8")
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        code = main(
            [
                "replay",
                str(tmp_path),
                "--processes",
                "2",
                "--clickhouse",
                f"chdb://{tmp_path / 'ch'}",
            ]
        )
    finally:
        release.set()
        other.join()
    assert code == 1
    assert "starts from a process without threads" in capsys.readouterr().err
    assert not (tmp_path / "ch").exists()  # refused before anything was opened


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_replay_with_its_output_closed_still_bills_and_ends_well(
    tmp_path: Path, processes: str
) -> None:
    # A replay ends its processes at once, its output flushed: an output the process was
    # started without (a descriptor closed) is no stream to flush, and no failure.
    write_example(tmp_path / "input", households=2, days=1, seed=1)
    dsn = f"chdb://{tmp_path / 'ch'}"
    replay = [*WATTPAY, "replay", str(tmp_path / "input"), "--processes", processes]
    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "replay", *replay, "--clickhouse", dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    counted = subprocess.run(
        [*WATTPAY, "sql", "SELECT count() FROM readings", "--clickhouse", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(counted.stdout.split()[-1]) > 0


def test_a_forked_follower_ends_with_its_first_process_whenever_that_dies() -> None:
    # Once a follower has seen the first process listen, nothing of its own would notice
    # that process die (Bytewax retries its connection for ever): the kernel ends it then.
    script = """
import os, signal, time
from pipelines.cluster import _fork
print(_fork(lambda arguments: time.sleep(60) or 0, []), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    # The follower holds the output pipe: it closes when the follower has ended too.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == -signal.SIGKILL
    follower = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(follower):
        assert time.monotonic() < deadline, "the follower outlived its first process"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an ended process not yet reaped is a zombie: not alive)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    return "\nState:\tZ" not in status
