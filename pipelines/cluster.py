"""``wattpay replay --processes N``: the replay as a Bytewax cluster of processes on loopback.

The first process is the one the user started: it forks the others, which run the same
command as followers, writes ClickHouse and the topic files and reports the progress; every
process reads the input files and bills its own share of the accounts
(``pipelines.replay``). A process that fails ends the whole replay with its exit code
instead of leaving the others waiting for it.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

from bytewax.dataflow import Dataflow

from bus.ports import free_port

# Replay runs without recovery: one long epoch avoids snapshotting state for nothing.
REPLAY_EPOCH = timedelta(days=1)


class Follower:
    """A follower process forked by the first one: ``poll``, ``wait`` and ``kill`` as in Popen.

    The watchdog and the first process's end both look at it, so it is reaped once.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """The exit code (negative: the signal that ended it), or None while it runs."""
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, poll: float = 0.005) -> int:
        """Wait until it has ended; its exit code."""
        while (code := self.poll()) is None:
            time.sleep(poll)
        return code

    def kill(self) -> None:
        """End it at once (nothing if it has ended and been waited for)."""
        with self._lock:
            if self.returncode is None:
                os.kill(self.pid, signal.SIGKILL)


@dataclass
class Cluster:
    """The other processes of a replay cluster, started by the first one."""

    addresses: list[str]
    followers: list[Follower]
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the first process ends the others itself: their exit is no failure then."""

    def stop(self) -> None:
        """End every follower (the first process did not get to run the flow)."""
        self.stopping.set()
        for follower in self.followers:
            follower.kill()
            follower.wait()


def start_followers(
    args: argparse.Namespace, command: Callable[[Sequence[str]], int]
) -> Cluster | None:
    """Start a cluster's other processes, or None for a single process or a follower.

    Each is forked from this one and runs ``command`` (the CLI's ``main``) with the
    follower's arguments, then ends at once with its exit code. They are forked before
    this process opens ClickHouse or starts any thread, with the flow's modules already
    imported, so a follower spends nothing on starting an interpreter and importing them
    (0.25–0.3 s of CPU that two cores shared with this process's own start); each waits
    until the first process listens before it joins (``wait_for_first``).
    """
    if args.process_id is not None or args.processes == 1:
        return None
    if threading.active_count() > 1:
        # A fork copies one thread: a lock another thread held would stay held in the child.
        msg = "a replay cluster starts from a process without threads: run `wattpay replay`"
        raise RuntimeError(msg)
    # Imported once, for every process forked below.
    import bytewax.run  # noqa: F401

    import pipelines.replay  # noqa: F401

    addresses = [f"127.0.0.1:{free_port()}" for _ in range(args.processes)]
    followers = [
        Follower(_fork(command, _follower_arguments(args, index, addresses)))
        for index in range(1, args.processes)
    ]
    cluster = Cluster(addresses, followers)
    watchdog = threading.Thread(target=_end_if_one_fails, args=(cluster,), daemon=True)
    watchdog.start()
    return cluster


def _fork(command: Callable[[Sequence[str]], int], arguments: list[str]) -> int:
    """A child process that runs ``command(arguments)`` and ends with its code; its pid."""
    _flushed()  # or the child would write what this process had buffered too
    first = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    _end_with(first)
    code = 1
    try:
        code = command(arguments)
    except SystemExit as ended:
        code = ended.code if isinstance(ended.code, int) else int(ended.code is not None)
    except BaseException:  # noqa: BLE001 - reported here: nothing above this frame is left
        traceback.print_exc()
    finally:
        # This process's interpreter, and whatever the first process left in it, is not
        # torn down: only the flushed output matters.
        end_now(code)


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends


def _end_with(first: int) -> None:
    """Have this follower end with the first process, whenever and however that ends.

    On Linux the kernel kills it then (``PR_SET_PDEATHSIG``): once it has joined the
    cluster, or while it connects to a first process that has just listened, nothing else
    would end it (Bytewax retries a connection for ever). If the first process has already
    ended, so does this one. Elsewhere ``wait_for_first`` still ends it before it joins.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != first:
        end_now(1)


def end_now(code: int) -> NoReturn:
    """End this process at once with ``code``, its output flushed and nothing torn down.

    An output that is closed, or whose reader has gone, cannot be flushed: the process then
    ends with 120 unless ``code`` already says it failed, as the interpreter's own exit does.
    """
    os._exit(code if _flushed() else code or 120)


def _flushed() -> bool:
    """Flush this process's output; False if a stream there could not be flushed."""
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed


def run_replay_cluster(flow: Dataflow, args: argparse.Namespace, cluster: Cluster | None) -> None:
    """Run the replay flow: one process, a follower of a cluster, or a cluster's first."""
    from bytewax.run import cli_main

    workers = args.workers
    if args.process_id is not None:
        addresses = str(args.addresses).split(";")
        wait_for_first(addresses[0], args.first_pid)
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=args.process_id,
            addresses=addresses,
            epoch_interval=REPLAY_EPOCH,
        )
        return
    if cluster is None:
        cli_main(flow, workers_per_process=workers, epoch_interval=REPLAY_EPOCH)
        return
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=0,
            addresses=cluster.addresses,
            epoch_interval=REPLAY_EPOCH,
        )
    except BaseException:
        cluster.stop()
        raise
    for index, follower in enumerate(cluster.followers, start=1):
        code = follower.wait()
        if code != 0:
            msg = f"replay process {index} exited with code {code}"
            raise RuntimeError(msg)


def wait_for_first(address: str, first_pid: int | None, poll: float = 0.01) -> None:
    """Wait until the first process listens on ``address`` (a loopback one), or exit if it died.

    Bytewax's cluster start connects each process to the ones before it and, when one does
    not listen yet, retries a second later: a follower started early would lose that
    second. ``first_pid`` is the first process, this one's parent: when it has ended, so
    does this one.
    """
    while not is_listening(address):
        if first_pid is not None and os.getppid() != first_pid:
            print("wattpay replay: the first process of the cluster ended", file=sys.stderr)
            raise SystemExit(1)
        time.sleep(poll)


def is_listening(address: str) -> bool:
    """Whether a TCP socket listens on ``address``; True when this cannot be told here.

    Linux lists listening sockets in /proc/net/tcp: local address and port in hex (127.0.0.1
    is ``0100007F``), state ``0A``. Elsewhere, or for another host, Bytewax's own retry
    remains.
    """
    host, _, port = address.rpartition(":")
    if host != "127.0.0.1" or not port.isdigit() or not 0 < int(port) < 65536:
        return True
    try:
        table = Path("/proc/net/tcp").read_text(encoding="ascii")
    except OSError:
        return True
    wanted = f"0100007F:{int(port):04X}"
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1] == wanted and fields[3] == "0A":
            return True
    return False


def _follower_arguments(args: argparse.Namespace, index: int, addresses: list[str]) -> list[str]:
    """The command line of follower ``index``, as the CLI's ``main`` takes it."""
    command = ["--config", str(args.config)] if args.config else []
    return [
        *command,
        "replay",
        str(args.directory),
        "--workers",
        str(args.workers),
        *(["--quiet"] if args.quiet else []),
        "--process-id",
        str(index),
        "--addresses",
        ";".join(addresses),
        "--first-pid",
        str(os.getpid()),
    ]


def _end_if_one_fails(cluster: Cluster) -> None:
    """A follower that dies would leave the first process waiting for it for ever."""
    followers = cluster.followers
    while True:
        for index, follower in enumerate(followers, start=1):
            code = follower.poll()
            if code not in (None, 0):
                if cluster.stopping.is_set():  # ended by the first process: it reports why
                    return
                for other in followers:
                    other.kill()
                print(
                    f"wattpay replay: replay process {index} exited with code {code}",
                    file=sys.stderr,
                )
                end_now(1)
        if all(follower.poll() == 0 for follower in followers):
            return
        time.sleep(0.2)
