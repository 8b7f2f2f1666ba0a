"""Disk of a ``wattpay up`` per input, with retention off and on (``[retention]``).

Usage: .venv/bin/python bench/disk.py [--households 60] [--days 7]

Each run starts a fresh ``wattpay up`` (durable embedded broker, embedded ClickHouse),
publishes the same example set (accounts, payments, readings, in processing order) and waits
until the last input is billed and loaded. "off" keeps every record (``enabled = false``):
the baseline. "on" runs the janitor every second with ages of zero, so what remains is what
the consumers and the recovery snapshots still hold; the figure is taken after its rounds
and the store's vacuum. Sizes are ``du`` of the store (``s3``), the recovery snapshots and
ClickHouse, projected to a million inputs linearly. Then ``wattpay backup`` copies the idle
installation, and the time its processes were stopped is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bus.kafka import new_producer  # noqa: E402
from bus.ports import free_port  # noqa: E402
from pipelines.replay_files import merged_envelopes  # noqa: E402
from simulate.example import write_example  # noqa: E402

END = "ZZ-END"
SETTINGS = {
    "off": "[retention]\nenabled = false\n",
    "on": "[retention]\nderived_hours = 0\ninput_days = 0\ninterval_seconds = 1\n",
}


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, as ``du`` counts them)."""
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(Path(directory) / name).st_blocks * 512
            except OSError:
                continue
    return total


def messages(directory: Path) -> list[tuple[str, bytes | None, bytes]]:
    found = []
    last = ""
    for envelope in merged_envelopes(directory):
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        key = payload.get("meter_id" if envelope.topic == "readings" else "account_id")
        found.append(
            (f"wattpay.{envelope.topic}", str(key).encode() if key else None, envelope.raw.encode())
        )
        last = max(last, str(payload.get("ts", "")))
    end = {
        "type": "open",
        "account_id": END,
        "meter_id": "M-ZZ",
        "plan": "zhejiang-tiered",
        "ts": last,
    }
    found.append(("wattpay.accounts", END.encode(), json.dumps(end).encode()))
    return found


def query(endpoint: str, sql: str) -> list[dict]:
    url = f"{endpoint}/query?" + urllib.parse.urlencode({"sql": sql, "format": "json"})
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def run(name: str, inputs: list[tuple[str, bytes | None, bytes]], work: Path) -> dict[str, float]:
    (work / "wattpay.toml").write_text(SETTINGS[name])
    ports = {k: free_port() for k in ("query", "metrics", "billing", "web")}
    command = [
        sys.executable, "-m", "wattpay.cli", "up", "--clickhouse", f"chdb://{work / 'clickhouse'}",
        "--query-port", str(ports["query"]), "--metrics-port", str(ports["metrics"]),
        "--billing-metrics-port", str(ports["billing"]), "--partitions", "4",
    ]  # fmt: skip
    env = {**os.environ, "WATTPAY_WEB_PORT": str(ports["web"]), "PYTHONPATH": str(ROOT)}
    with (work / "up.log").open("ab") as log:
        up = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    state = work / ".wattpay" / "up.json"
    while not state.exists():
        time.sleep(0.2)
        if up.poll() is not None:
            raise SystemExit((work / "up.log").read_text()[-2000:])
    endpoint = json.loads(state.read_text())["query"]
    producer = new_producer({"bootstrap.servers": json.loads(state.read_text())["brokers"]})
    started = time.monotonic()
    for topic, key, value in inputs:
        if topic != "wattpay.readings":
            producer.flush(30)  # events and payments in order against the readings
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    producer.flush(60)
    while not query(endpoint, f"SELECT count() AS n FROM accounts WHERE account_id = '{END}'")[0][
        "n"
    ]:
        time.sleep(1.0)
    billed = time.monotonic() - started
    time.sleep(8.0)  # the loader's last batch; with retention, its rounds and the vacuum
    sizes = {
        "s3": du(work / ".wattpay" / "s3"),
        "recovery": du(work / ".wattpay" / "recovery"),
        "clickhouse": du(work / "clickhouse"),
    }
    backup = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "wattpay.cli", "backup", str(work / "copy")],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    stopped = float(backup.stdout.split("stopped for ")[1].split("s")[0])
    up.send_signal(signal.SIGINT)
    up.wait(120)
    return {**{k: v / 1e6 for k, v in sizes.items()}, "billed_s": billed, "stopped_s": stopped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=60)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wattpay-disk-") as scratch:
        data = Path(scratch) / "example"
        start = date.today() - timedelta(days=args.days + 2)  # noqa: DTZ011 - a day in the past
        write_example(data, households=args.households, days=args.days, seed=5, start=start)
        inputs = messages(data)
        print(f"# {datetime.now(UTC):%Y-%m-%d} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, {len(inputs):,} inputs")  # fmt: skip
        print("| retention | inputs | billed in s | s3 MB | recovery MB | ClickHouse MB | "
              "total MB | total MB / million inputs | broker MB / million inputs | "
              "backup: stopped for s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in ("off", "on"):
            work = Path(scratch) / name
            work.mkdir()
            got = run(name, inputs, work)
            total = got["s3"] + got["recovery"] + got["clickhouse"]
            per = 1e6 / len(inputs)
            print(f"| {name} | {len(inputs):,} | {got['billed_s']:.1f} | {got['s3']:.1f} | "
                  f"{got['recovery']:.1f} | {got['clickhouse']:.1f} | {total:.1f} | "
                  f"{total * per:,.0f} | {got['s3'] * per:,.0f} | {got['stopped_s']:.2f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
