"""`wattpay up` end to end: real kcat in and out, `wattpay topup` and `wattpay sql` against the
running instance, a real Prometheus scraping it, and a stop/restart that loses nothing."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing.clock import LOCAL_ZONE
from bus.ports import free_port
from tests.live_harness import (
    FIRST_START_ATTEMPTS,
    PORT_TAKEN,
    Instance,
    free_ports,
    up_command,
    up_environment,
    wait_until,
)
from tests.tools import kcat_command, require_tool

pytestmark = pytest.mark.live
START = datetime(2026, 11, 23, 7, 0, tzinfo=LOCAL_ZONE)  # a Monday
READINGS = 24


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    running = Instance(tmp_path_factory.mktemp("up"))
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def kcat(instance: Instance, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    path, env = kcat_command(instance.work)
    return subprocess.run(
        [path, "-b", instance.state["brokers"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_kcat_readings_are_billed_and_kcat_reads_the_notifications(instance: Instance) -> None:
    opened = instance.run(
        "account",
        "open",
        "A1",
        "--meter",
        "M1",
        "--plan",
        "zhejiang-tiered",
        "--opening-balance",
        "25.00",
        "--phone",
        "13800000000",
        "--ts",
        START.isoformat(),
    )
    assert opened.returncode == 0, opened.stderr
    lines = []
    for i in range(READINGS):
        ts = (START + timedelta(minutes=15 * i)).isoformat()
        value = {"meter_id": "M1", "ts": ts, "energy_kwh": f"{1000 + i:.3f}"}
        lines.append("M1:" + json.dumps(value))
    produced = kcat(instance, "-P", "-t", "wattpay.readings", "-K:", stdin="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    # 23 kWh at 0.538 = 12.374 yuan accrued: available 12.63 < 20.00 → one low_balance alert.
    wait_until(
        lambda: instance.sql("SELECT count() AS n FROM intervals FINAL")[0]["n"] == READINGS - 1,
        60,
        "every interval to be rated and loaded",
    )
    cost = instance.sql("SELECT sum(cost) AS c FROM intervals FINAL")[0]["c"]
    assert Decimal(cost) == Decimal("23") * Decimal("0.538")
    consumed = kcat(instance, "-C", "-t", "wattpay.notifications", "-e", "-J", "-q")
    messages = [json.loads(line) for line in consumed.stdout.splitlines() if line.strip()]
    payloads = [json.loads(m["payload"]) for m in messages]
    alerts = [p for p in payloads if p["type"] == "low_balance"]
    assert len(alerts) == 1
    assert alerts[0]["account_id"] == "A1" and alerts[0]["phone"] == "13800000000"
    assert Decimal(alerts[0]["data"]["available"]) < Decimal("20.00")
    assert all(m["key"] == "A1" for m in messages)


def test_topup_through_the_cli_and_sql_through_the_endpoint(instance: Instance) -> None:
    done = instance.run(
        "topup",
        "A1",
        "100.00",
        "--channel",
        "wechat",
        "--payment-id",
        "P-1",
        "--ts",
        (START + timedelta(hours=7)).isoformat(),
    )
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: (
            instance.sql("SELECT count() AS n FROM ledger FINAL WHERE ref = 'P-1'")[0]["n"] == 1
        ),
        60,
        "the top-up to reach the ledger",
    )
    row = instance.sql("SELECT amount, balance_after FROM ledger FINAL WHERE ref = 'P-1'")[0]
    assert Decimal(row["amount"]) == Decimal("100.00")
    assert Decimal(row["balance_after"]) == Decimal("125.00")
    refused = instance.run("sql", "DROP TABLE ledger")
    assert refused.returncode != 0
    assert instance.sql("SELECT count() AS n FROM ledger")[0]["n"] >= 1


def test_the_running_instance_is_locked_down(instance: Instance) -> None:
    state_dir = instance.work / ".wattpay"
    before = (state_dir / "up.json").read_bytes()
    assert (state_dir / "up.json").stat().st_mode & 0o777 == 0o600
    for query in ("SELECT file('/etc/shadow')", "SELECT file('/proc/self/environ')"):
        done = instance.run("sql", query)  # through the instance's query endpoint
        assert done.returncode == 2 and "file() is not allowed" in done.stderr
    endpoint = instance.state["query"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(  # noqa: S310 - loopback
            urllib.request.Request(
                f"{endpoint}/query?sql=SELECT%201", headers={"Host": "rebound.example"}
            ),
            timeout=30,
        )
    assert refused.value.code == 403
    second = instance.run(
        "up",
        "--query-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--billing-metrics-port",
        str(free_port()),
        "--clickhouse",
        "chdb://./elsewhere",
    )
    assert second.returncode == 2, second.stderr
    assert f"pid {instance.state['pid']}" in second.stderr and endpoint in second.stderr
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert (state_dir / "up.json").read_bytes() == before
    assert not (instance.work / "elsewhere").exists()
    assert instance.process is not None and instance.process.poll() is None


def prometheus_query(port: int, expression: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success"
    return body["data"]["result"]


def test_prometheus_scrapes_the_running_system(instance: Instance, tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    targets = [
        m.removeprefix("http://").removesuffix("/metrics") for m in instance.state["metrics"]
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n"
        "scrape_configs:\n  - job_name: wattpay\n"
        f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
    )
    port = free_port()
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def scraped() -> bool:
            try:
                result = prometheus_query(port, 'wattpay_messages_in_total{topic="readings"}')
            except OSError:
                return False
            return bool(result) and float(result[0]["value"][1]) == READINGS

        wait_until(scraped, 60, "Prometheus to scrape the readings counter")
        for topic in ("accounts", "payments", "readings"):
            received = prometheus_query(port, f'sum(wattpay_messages_in_total{{topic="{topic}"}})')
            handled = prometheus_query(
                port,
                f'sum(wattpay_messages_applied_total{{topic="{topic}"}})'
                f' + (sum(wattpay_messages_rejected_total{{topic="{topic}"}}) or vector(0))',
            )
            assert float(received[0]["value"][1]) == float(handled[0]["value"][1]) > 0
        alerts = prometheus_query(port, 'wattpay_notifications_total{type="low_balance"}')
        assert float(alerts[0]["value"][1]) == 1
        wait_until(
            lambda: bool(prometheus_query(port, "wattpay_clickhouse_batch_rows_count")),
            30,
            "loader batch metrics",
        )
        # Scrapes can fail on a loaded machine; both targets must come (back) up.
        wait_until(
            lambda: [r["value"][1] for r in prometheus_query(port, "up")] == ["1", "1"],
            30,
            "both targets to be up",
        )
    finally:
        prometheus.terminate()
        prometheus.wait(30)


def test_stop_and_restart_loses_nothing(instance: Instance) -> None:
    before = instance.sql("SELECT entry_id, balance_after FROM ledger FINAL ORDER BY entry_id")
    instance.stop()
    instance.start()
    after = instance.sql("SELECT entry_id, balance_after FROM ledger FINAL ORDER BY entry_id")
    assert after == before
    # Balances carry on from the recovered state and the durable topics.
    done = instance.run(
        "topup",
        "A1",
        "10.00",
        "--channel",
        "app",
        "--payment-id",
        "P-2",
        "--ts",
        (START + timedelta(hours=8)).isoformat(),
    )
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: (
            instance.sql("SELECT count() AS n FROM ledger FINAL WHERE ref = 'P-2'")[0]["n"] == 1
        ),
        90,
        "the top-up after restart",
    )
    row = instance.sql("SELECT balance_after FROM ledger FINAL WHERE ref = 'P-2'")[0]
    assert Decimal(row["balance_after"]) == Decimal("135.00")


def _running_in(work: Path) -> list[str]:
    """Command lines of the processes that work in ``work`` (the broker, the S3 store, billing)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(work) in command or cwd == str(work):
            found.append(command)
    return found


@pytest.mark.parametrize("after", [0.0, 0.3, 1.5])
def test_ctrl_c_while_starting_leaves_nothing_behind(tmp_path: Path, after: float) -> None:
    """SIGINT at moments of the start (lock taken, store or broker starting, topics, ...).

    An ``up`` that met a port another test took meanwhile is started again on new ports
    (``FIRST_START_ATTEMPTS``), as the harness's first starts are.
    """
    ports = free_ports()
    log_path = tmp_path / "up.log"
    for attempt in range(1, FIRST_START_ATTEMPTS + 1):
        started_at = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                up_command(f"chdb://{tmp_path / 'clickhouse'}", ports),
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=up_environment(ports),
            )
            # The state directory appears when `up` claims it, its first step.
            wait_until(lambda: (tmp_path / ".wattpay").exists(), 60, "wattpay up to start")
            time.sleep(after)
            process.send_signal(signal.SIGINT)
            code = process.wait(90)
        said = log_path.read_bytes()[started_at:].decode("utf-8", "replace")
        if code == 0 or PORT_TAKEN not in said or attempt == FIRST_START_ATTEMPTS:
            break
        ports = free_ports()  # another test bound one meanwhile
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output[-3000:]
    assert not (tmp_path / ".wattpay" / "up.json").exists(), output[-3000:]
    wait_until(lambda: not _running_in(tmp_path), 20, "the broker and S3 store to exit")
