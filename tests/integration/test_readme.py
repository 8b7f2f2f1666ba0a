"""The README's live example, run command by command exactly as it is printed.

It runs in an empty directory whose ``.venv`` is the environment running the tests, as on a
fresh checkout after ``make``; only the environment moves ``wattpay up``'s ports to free ones
so that it can run beside other instances.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_harness import free_ports, start_up, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.live
ROOT = REPO
RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|", re.MULTILINE)


def shell_blocks(section: str) -> list[list[str]]:
    """The lines of every ``sh`` code block under a README heading, as printed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    return [block.strip("\n").splitlines() for block in re.findall(r"```sh\n(.*?)```", body, re.S)]


def shell(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _environment(ports: dict[str, int]) -> dict[str, str]:
    """The environment of the README's commands, with ``up``'s ports moved to ``ports``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "WATTPAY_QUERY_PORT": str(ports["query"]),
        "WATTPAY_METRICS_PORT": str(ports["metrics"]),
        "WATTPAY_BILLING_METRICS_PORT": str(ports["billing"]),
        "WATTPAY_WEB_PORT": str(ports["web"]),
    }
    for name in ("WATTPAY_BROKERS", "WATTPAY_CLICKHOUSE_DSN", "WATTPAY_CONFIG"):
        env.pop(name, None)
    return env


def test_the_live_example_works_as_printed(tmp_path: Path) -> None:
    (up_line,), commands = shell_blocks("Running it live")
    assert up_line.startswith(".venv/bin/wattpay up ")
    assert not any("kcat" in line for line in commands)  # needs a newer librdkafka than Debian's
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    log_path = tmp_path / "up.log"
    starts: list[int] = []  # where each start's output begins in the log

    def launch(ports: dict[str, int]) -> subprocess.Popen[bytes]:
        starts.append(log_path.stat().st_size if log_path.exists() else 0)
        with log_path.open("ab") as log:
            return subprocess.Popen(
                ["bash", "-c", up_line],
                cwd=tmp_path,
                env=_environment(ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # A port another test took meanwhile makes `up` end while starting: new ones, as the
    # harness's first starts do.
    state_file = tmp_path / ".wattpay" / "up.json"
    up, ports = start_up(launch, free_ports(), log_path, state_file, 90, first=True)
    env = _environment(ports)
    try:
        *steps, query = commands
        said = []
        for line in steps:
            done = shell(line, tmp_path, env)
            assert done.returncode == 0, (line, done.stderr)
            said.append(done.stderr)
        assert "1 delivered to wattpay.readings" in said[1]

        def ledger_shows_the_top_up() -> bool:
            done = shell(query, tmp_path, env)
            assert done.returncode == 0, (query, done.stderr)
            return "topup" in done.stdout and "100.00" in done.stdout

        wait_until(ledger_shows_the_top_up, 90, "the top-up in the ledger")
        readings = shell(
            '.venv/bin/wattpay sql "SELECT meter_id, energy_kwh FROM readings FINAL"',
            tmp_path,
            env,
        )
        assert "M1" in readings.stdout and "1234.56" in readings.stdout, readings
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            up.wait(90)
    output = log_path.read_bytes()[starts[-1] :].decode("utf-8", errors="replace")
    assert output.startswith("wattpay is up\n"), output[:500]
    assert RAW_LIBRDKAFKA_LINE.search(output) is None, output[:2000]
