"""``wattpay replay --processes N``: the replay as a Bytewax cluster of processes on loopback.

The first process is the one the user started: it starts the others with the same
options, writes ClickHouse and the topic files and reports the progress; every process
reads the input files and bills its own share of the accounts (``pipelines.replay``). A
process that fails ends the whole replay with its exit code instead of leaving the others
waiting for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

from bus.ports import free_port

# Replay runs without recovery: one long epoch avoids snapshotting state for nothing.
REPLAY_EPOCH = timedelta(days=1)


@dataclass
class Cluster:
    """The other processes of a replay cluster, started by the first one."""

    addresses: list[str]
    followers: list[subprocess.Popen[bytes]]
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the first process ends the others itself: their exit is no failure then."""

    def stop(self) -> None:
        """End every follower (the first process did not get to run the flow)."""
        self.stopping.set()
        for follower in self.followers:
            follower.kill()
            follower.wait()


def start_followers(args: argparse.Namespace) -> Cluster | None:
    """Start a cluster's other processes, or None for a single process or a follower.

    The first process starts them before it opens ClickHouse and builds its flow, so their
    start-up (0.4–0.5 s of imports) overlaps its own instead of following it; each waits
    until the first process listens before it joins (``wait_for_first``).
    """
    if args.process_id is not None or args.processes == 1:
        return None
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(args.processes)]
    followers = [
        subprocess.Popen(_follower_command(args, index, addresses))  # noqa: S603 - our own CLI
        for index in range(1, args.processes)
    ]
    cluster = Cluster(addresses, followers)
    watchdog = threading.Thread(target=_end_if_one_fails, args=(cluster,), daemon=True)
    watchdog.start()
    return cluster


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


def _follower_command(args: argparse.Namespace, index: int, addresses: list[str]) -> list[str]:
    command = [sys.executable, "-m", "wattpay.cli"]
    if args.config:
        command += ["--config", str(args.config)]
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
                    flush=True,
                )
                os._exit(1)
        if all(follower.poll() == 0 for follower in followers):
            return
        time.sleep(0.2)
