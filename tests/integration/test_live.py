"""The live system on the real embedded broker: recovery, scale-out, loader outages (S10).

Every run publishes the same example set to a fresh broker before the billing flow starts,
so the merged input order, and therefore every balance, is the same in each run.
"""

import random
import signal
import subprocess
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from billing.outputs import Row
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.replay_files import merged_envelopes
from simulate.example import write_example
from tests.live_harness import (
    free_port,
    metric,
    output_ids,
    produce_inputs,
    start_billing,
    start_broker,
    start_loader,
    stop,
    tables,
    wait_until,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("example")
    write_example(directory, households=20, days=6, seed=5)
    return directory


def lag_reported(port: int) -> bool:
    """Whether a billing process's source has reported its input lag (it has started reading)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return b"wattpay_input_lag_messages{" in response.read()
    except OSError:
        return False


def wait_idle(billing: list[subprocess.Popen[bytes]], ports: list[int], quiet: float = 3.0) -> None:
    """Until the billing processes have read everything: their input counters stop moving.

    The quiet time counts from when the flow has started reading (a process counted input or
    reported its lag): before that the counters stand still at 0 however much input waits,
    while the processes start and join their cluster.
    """
    last, since = None, time.monotonic()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert all(process.poll() is None for process in billing), "the billing flow died"
        counts = [metric(port, "wattpay_messages_in_total") for port in ports]
        started = sum(counts) > 0 or any(lag_reported(port) for port in ports)
        if counts != last or not started:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.3)
    raise AssertionError("the billing flow never went idle")


def input_lag(port: int) -> float | None:
    """``wattpay_input_lag_messages`` summed over the input topics (None before it is reported)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    if 'wattpay_input_lag_messages{topic="readings"}' not in text:
        return None
    return metric(port, "wattpay_input_lag_messages")


def live_run(
    inputs: Path,
    work: Path,
    *,
    billing_kills: int = 0,
    loader_kills: int = 0,
    processes: int = 1,
    seed: int = 0,
    loader_late: bool = False,
) -> tuple[dict, dict]:
    """Run billing + loader over the inputs; optionally SIGKILL them on the way."""
    chance = random.Random(seed)
    broker = start_broker()
    started: list[subprocess.Popen[bytes]] = []  # killed at the end, should the run fail

    def spawn(process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        started.append(process)
        return process

    try:
        produce_inputs(broker, inputs)
        dsn = f"chdb://{work / 'clickhouse'}"
        recovery = work / "recovery"
        loader = None if loader_late else spawn(start_loader(broker, dsn))
        ports = [free_port() for _ in range(processes)]
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))

        def launch() -> list[subprocess.Popen[bytes]]:
            if processes == 1:
                return [spawn(start_billing(broker, recovery, ports[0]))]
            return [
                spawn(start_billing(broker, recovery, ports[i], process_id=i, addresses=addresses))
                for i in range(processes)
            ]

        billing = launch()
        for _ in range(billing_kills):
            time.sleep(chance.uniform(1.5, 4.0))
            for process in billing:
                process.kill()
                process.wait()
            billing = launch()
        if loader is None:
            # ClickHouse is unreachable for the whole billing run: alerts and commands must
            # still flow, and the tables catch up once the loader is back.
            wait_idle(billing, ports)
            early = output_ids(broker)
            assert early["notifications"] and early["meter-commands"]
            loader = spawn(start_loader(broker, dsn))
        for _ in range(loader_kills):
            time.sleep(chance.uniform(1.0, 3.0))
            loader.kill()
            loader.wait()
            loader = spawn(start_loader(broker, dsn))
        wait_idle(billing, ports)
        if processes == 1:  # all read: nothing left behind the fetch responses' end
            wait_until(lambda: input_lag(ports[0]) == 0.0, 15, "billing's input lag to reach 0")
        ids = output_ids(broker)
        for process in billing:
            stop(process, signal.SIGINT)
        stop(loader)  # drains the facts topic to its end, then commits
        assert loader.returncode == 0
        return tables(dsn), ids
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        broker.stop()


@pytest.fixture(scope="module")
def clean_run(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return live_run(inputs, tmp_path_factory.mktemp("clean"))


def test_live_run_bills_like_the_reference(inputs: Path, clean_run: tuple[dict, dict]) -> None:
    """Without end-of-input closes, live billing posts exactly what the core computes."""
    reference = [
        o
        for o in run_sequential(merged_envelopes(inputs), BillingRules(), close_at_end=False)
        if isinstance(o, Row)
    ]
    want = {
        (r.values["entry_id"], r.values["amount"], r.values["balance_after"])
        for r in reference
        if r.table == "ledger"
    }
    got = {
        (r["entry_id"], Decimal(r["amount"]), Decimal(r["balance_after"]))
        for r in clean_run[0]["ledger"]
    }
    assert got == want
    assert len(clean_run[0]["daily_usage"]) == sum(1 for r in reference if r.table == "daily_usage")
    assert clean_run[1]["notifications"], "no notification reached its topic"


def test_billing_killed_three_times_loses_and_doubles_nothing(
    inputs: Path, clean_run: tuple[dict, dict], tmp_path: Path
) -> None:
    killed, ids = live_run(inputs, tmp_path, billing_kills=3, seed=11)
    for table, rows in clean_run[0].items():
        assert killed[table] == rows, table
    for topic, expected in clean_run[1].items():
        assert expected <= ids[topic], topic


def test_loader_killed_three_times_loses_and_doubles_nothing(
    inputs: Path, clean_run: tuple[dict, dict], tmp_path: Path
) -> None:
    killed, _ = live_run(inputs, tmp_path, loader_kills=3, seed=12)
    for table, rows in clean_run[0].items():
        assert killed[table] == rows, table


def test_two_process_cluster_matches_one_process(
    inputs: Path, clean_run: tuple[dict, dict], tmp_path: Path
) -> None:
    clustered, ids = live_run(inputs, tmp_path, processes=2)
    for table, rows in clean_run[0].items():
        assert clustered[table] == rows, table
    assert ids == clean_run[1]


def test_billing_runs_on_while_the_loader_is_down(
    inputs: Path, clean_run: tuple[dict, dict], tmp_path: Path
) -> None:
    late, ids = live_run(inputs, tmp_path, loader_late=True)
    for table, rows in clean_run[0].items():
        assert late[table] == rows, table
    assert ids == clean_run[1]
