"""`wattpay billing` as benchmark subprocesses: one process, or a cluster of several.

Shared by bench/live.py, bench/snapshots.py and bench/city.py. Everything is read from the
outside: the Prometheus endpoint of each process (``wattpay_messages_in_total`` and friends),
Bytewax's own metrics (snapshot durations), ``/proc/<pid>`` (CPU, resident memory).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bus.ports import free_port  # noqa: E402

STORE = "(store)"

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """Every sample on a Prometheus endpoint as (name, labels, value); [] when it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return []
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_sum(
    samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str
) -> float:
    """Sum of one metric's samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def rss_bytes(pid: int | None) -> int:
    """Resident set size of a running process in bytes (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a running process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Progress:
    """Samples (seconds since spawn, messages counted) of one billing run."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    def processing(self, total: float) -> tuple[float, float]:
        """(seconds, messages/s) from the first counted message until ``total`` were counted."""
        first = next((s for s in self.samples if s[1] > 0), None)
        done = next((s for s in self.samples if s[1] >= total), self.samples[-1])
        if first is None or done[0] <= first[0]:
            return 0.0, 0.0
        seconds = done[0] - first[0]
        return seconds, (done[1] - first[1]) / seconds

    def wall(self, total: float) -> float:
        """Seconds from spawn until ``total`` messages were counted."""
        return next((s[0] for s in self.samples if s[1] >= total), self.samples[-1][0])


class BillingProcess:
    """`wattpay billing` as a subprocess with its own recovery directory and metrics port."""

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        epoch_seconds: float,
        tag: str,
        *,
        recovery: Path | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.args = list(args)
        self.epoch_seconds = epoch_seconds
        self.recovery = recovery or workdir / f"recovery-{tag}"
        self.log_path = workdir / f"billing-{tag}.log"
        self.extra_env = env or {}
        self.port = free_port()
        self.engine_port = free_port()  # Bytewax's own metrics (snapshot durations by step)
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned = 0.0

    def __enter__(self) -> BillingProcess:
        command = [
            sys.executable,
            "-m",
            "wattpay.cli",
            "billing",
            "--brokers",
            self.bootstrap,
            "--recovery-dir",
            str(self.recovery),
            "--metrics-port",
            str(self.port),
            "--epoch-seconds",
            str(self.epoch_seconds),
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATTPAY_", "BYTEWAX_"))}
        env["BYTEWAX_DATAFLOW_API_ENABLED"] = "true"
        env["BYTEWAX_DATAFLOW_API_PORT"] = str(self.engine_port)
        env["BYTEWAX_DATAFLOW_API_CACHE_PATH"] = str(self.log_path.parent)  # its dataflow.json
        env.update(self.extra_env)
        with self.log_path.open("wb") as log:
            self.spawned = time.monotonic()
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGINT (a clean stop), then SIGKILL after 60 s."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, limit: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-limit:]

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"wattpay billing exited ({code}):\n{self.log_tail()}")

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample of its metrics endpoint ([] while it is not serving yet)."""
        return scrape(self.port)

    def counted(self, topic: str | None = None) -> float:
        """Input messages counted so far (of one topic, or all)."""
        labels = {"topic": topic} if topic else {}
        return metric_sum(self.samples(), "wattpay_messages_in_total", **labels)

    def billed(self, topic: str | None = None) -> float:
        """Input messages applied or rejected by the accounts so far (of one topic, or all)."""
        labels = {"topic": topic} if topic else {}
        samples = self.samples()
        return metric_sum(samples, "wattpay_messages_applied_total", **labels) + metric_sum(
            samples, "wattpay_messages_rejected_total", **labels
        )

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid if self.process else None)

    def rss_bytes(self) -> int:
        """Resident memory of the process now (``VmRSS`` of /proc/<pid>/status)."""
        return rss_bytes(self.process.pid if self.process else None)

    def wait_counted(
        self,
        total: float,
        *,
        topic: str | None = None,
        timeout: float = 1800,
        every: float = 0.25,
        billed: bool = False,
    ) -> Progress:
        """Sample the input counter (or the billed one) until it reaches ``total``.

        Fails when the process dies or the timeout passes.
        """
        progress = Progress()
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            now = self.billed(topic) if billed else self.counted(topic)
            progress.samples.append((time.monotonic() - self.spawned, now))
            if now >= total:
                return progress
            if time.monotonic() > deadline:
                raise TimeoutError(f"billing counted {now:,.0f} of {total:,.0f} in {timeout}s")
            time.sleep(every)

    def wait_idle(self, quiet: float = 2.0, timeout: float = 300) -> float:
        """Until the input counter has not moved for ``quiet`` seconds after start-up."""
        last, since = -1.0, time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            samples = self.samples()
            if not samples:  # not serving metrics yet: still starting
                since = time.monotonic()
                time.sleep(0.2)
                continue
            now = metric_sum(samples, "wattpay_messages_in_total")
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
            time.sleep(0.2)
        raise TimeoutError("wattpay billing never went idle")

    def snapshot_seconds(self) -> dict[str, float]:
        """Seconds Bytewax spent in ``snapshot`` so far by step (route, accounts, input…),
        and writing the recovery store (``store``), from its own metrics."""
        seconds: dict[str, float] = {}
        for name, labels, value in scrape(self.engine_port):
            if name == "bytewax_snapshot_duration_seconds_sum":
                step = labels.get("step_id", "?").split(".")[1]
                seconds[step] = seconds.get(step, 0.0) + value
            elif name == "bytewax_partd_write_duration_seconds_sum":
                seconds[STORE] = seconds.get(STORE, 0.0) + value
        return seconds

    def recovery_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.recovery.glob("*") if p.is_file())


class BillingCluster(BillingProcess):
    """``processes`` `wattpay billing` processes (``-i k -a …``) sharing one recovery store.

    Counters, CPU and snapshot seconds are the sums over the processes.
    """

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        epoch_seconds: float,
        tag: str,
        processes: int,
        *,
        recovery: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(bootstrap, workdir, epoch_seconds, tag, recovery=recovery, env=env)
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        self.members = [
            BillingProcess(
                bootstrap,
                workdir,
                epoch_seconds,
                f"{tag}-p{index}",
                recovery=self.recovery,
                env=env,
                args=["-i", str(index), "-a", addresses],
            )
            for index in range(processes)
        ]

    def __enter__(self) -> BillingCluster:
        self.spawned = time.monotonic()
        for member in self.members:
            member.__enter__()
        return self

    def stop(self) -> None:
        """Stop every process."""
        for member in self.members:
            member.stop()

    def check_alive(self) -> None:
        for member in self.members:
            member.check_alive()

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """The samples of every process ([] until all of them serve metrics)."""
        parts = [member.samples() for member in self.members]
        return [] if not all(parts) else [sample for part in parts for sample in part]

    def cpu(self) -> float:
        return sum(member.cpu() for member in self.members)

    def rss_bytes(self) -> int:
        return sum(member.rss_bytes() for member in self.members)

    def snapshot_seconds(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for member in self.members:
            for step, value in member.snapshot_seconds().items():
                seconds[step] = seconds.get(step, 0.0) + value
        return seconds


def billing_process(
    bootstrap: str,
    workdir: Path,
    epoch_seconds: float,
    tag: str,
    *,
    processes: int = 1,
    recovery: Path | None = None,
    env: dict[str, str] | None = None,
) -> BillingProcess:
    """One `wattpay billing` process, or a cluster of ``processes`` of them."""
    if processes == 1:
        return BillingProcess(bootstrap, workdir, epoch_seconds, tag, recovery=recovery, env=env)
    return BillingCluster(
        bootstrap, workdir, epoch_seconds, tag, processes, recovery=recovery, env=env
    )
