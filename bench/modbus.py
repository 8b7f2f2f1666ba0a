"""Modbus poll round: 1,000 simulated meters on 5 ports (200 unit ids each), pooled vs single.

Usage: .venv/bin/python bench/modbus.py [--meters 1000] [--units-per-port 200] [--rounds 5]
       [--connections 4] [--latency-ms 0,5]

Starts `wattpay simulate` as a subprocess on 127.0.0.1 (so server and poller do not share an
event loop), then times full poll rounds (energy + power, two requests per meter) with a pool
of `--connections` per host:port, and with a single connection per host:port, in this same
run. It does so once per simulated gateway latency: 0 ms (loopback, CPU-bound) and 5 ms (each
answer delayed, like a remote gateway's round trip). Prints the median round time, meters/s
and a Markdown row per latency for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meters.clock import SimClock  # noqa: E402
from meters.modbus import ModbusClient, quiet_modbus_logs  # noqa: E402
from meters.poller import MemoryPublisher, Poller  # noqa: E402
from meters.registers import load_registry  # noqa: E402


def start_simulator(
    meters: int, units_per_port: int, latency_ms: float, registry: Path
) -> subprocess.Popen:
    """Run `wattpay simulate` and wait until it has written the registry."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wattpay.cli",
            "simulate",
            "--meters",
            str(meters),
            "--units-per-port",
            str(units_per_port),
            "--port",
            "0",
            "--registry-out",
            str(registry),
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line or not registry.exists():
        process.kill()
        raise SystemExit(f"simulator did not start (exit {process.wait()})")
    return process


async def time_rounds(registry: Path, connections: int, rounds: int) -> list[float]:
    """Seconds per full poll round, after one warm-up round that opens the connections."""
    meters = load_registry(registry).meters
    async with ModbusClient(connections=connections, timeout=2.0, retries=1) as client:
        poller = Poller(meters, client, MemoryPublisher(), clock=SimClock())
        times = []
        for index in range(rounds + 1):
            started = time.perf_counter()
            readings = await poller.poll_round(poller.clock.now())
            if len(readings) != len(meters):
                raise SystemExit(f"round {index}: {len(readings)} of {len(meters)} readings")
            times.append(time.perf_counter() - started)
        return times[1:]


def measure(args: argparse.Namespace, latency_ms: float) -> tuple[list[float], list[float]]:
    """Round times with the pool and with one connection per port, against one simulator."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "meters.toml"
        simulator = start_simulator(args.meters, args.units_per_port, latency_ms, registry)
        try:
            pooled = asyncio.run(time_rounds(registry, args.connections, args.rounds))
            single = asyncio.run(time_rounds(registry, 1, args.rounds))
        finally:
            simulator.send_signal(signal.SIGTERM)
            simulator.wait(timeout=10)
    return pooled, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--units-per-port", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--latency-ms", default="0,5", help="comma-separated latencies")
    args = parser.parse_args()
    quiet_modbus_logs()
    ports = -(-args.meters // args.units_per_port)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = (
        f"bench/modbus.py --meters {args.meters} --units-per-port {args.units_per_port} "
        f"--rounds {args.rounds} --connections {args.connections} --latency-ms {args.latency_ms}"
    )
    today = datetime.now(UTC).date().isoformat()
    print(f"machine: {machine}")
    print(f"meters: {args.meters} on {ports} ports, 2 requests per meter per round")
    rows = []
    for latency_ms in (float(text) for text in args.latency_ms.split(",")):
        pooled, single = measure(args, latency_ms)
        pool_s, single_s = statistics.median(pooled), statistics.median(single)
        for label, times, median in (
            (f"pool of {args.connections} per port", pooled, pool_s),
            ("single connection per port", single, single_s),
        ):
            print(
                f"latency {latency_ms:g} ms, {label}: median {median:.3f} s per round "
                f"= {args.meters / median:,.0f} meters/s "
                f"(rounds: {json.dumps([round(t, 3) for t in times])})"
            )
        rows.append(
            f"| {today} | {machine} | `{command}` | {latency_ms:g} ms | {pool_s:.3f} s "
            f"| {args.meters / pool_s:,.0f} | {single_s:.3f} s | {args.meters / single_s:,.0f} "
            f"| {single_s / pool_s:.2f}× |"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
