"""``wattpay replay --processes N``: the replay as a Bytewax cluster of processes on loopback.

The first process is the one the user started: it starts the others with the same
options and writes ClickHouse and the topic files; the last one reads the input files
(and reports the progress); billing is spread over the workers of every process. A
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
from datetime import timedelta

from bytewax.dataflow import Dataflow

from bus.ports import free_port

# Replay runs without recovery: one long epoch avoids snapshotting state for nothing.
REPLAY_EPOCH = timedelta(days=1)


def run_replay_cluster(flow: Dataflow, args: argparse.Namespace) -> None:
    """Run the replay flow: one process, a follower of a cluster, or a cluster's first."""
    from bytewax.run import cli_main

    workers = args.workers
    if args.process_id is not None:
        addresses = str(args.addresses).split(";")
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=args.process_id,
            addresses=addresses,
            epoch_interval=REPLAY_EPOCH,
        )
        return
    if args.processes == 1:
        cli_main(flow, workers_per_process=workers, epoch_interval=REPLAY_EPOCH)
        return
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(args.processes)]
    followers = [
        subprocess.Popen(_follower_command(args, index, addresses))  # noqa: S603 - our own CLI
        for index in range(1, args.processes)
    ]
    watchdog = threading.Thread(target=_end_if_one_fails, args=(followers,), daemon=True)
    watchdog.start()
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=0,
            addresses=addresses,
            epoch_interval=REPLAY_EPOCH,
        )
    except BaseException:
        for follower in followers:
            follower.kill()
        raise
    for index, follower in enumerate(followers, start=1):
        code = follower.wait()
        if code != 0:
            msg = f"replay process {index} exited with code {code}"
            raise RuntimeError(msg)


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
    ]


def _end_if_one_fails(followers: list[subprocess.Popen[bytes]]) -> None:
    """A follower that dies would leave the first process waiting for it for ever."""
    while True:
        for index, follower in enumerate(followers, start=1):
            code = follower.poll()
            if code not in (None, 0):
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
