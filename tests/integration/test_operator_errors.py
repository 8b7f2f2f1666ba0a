"""Operator mistakes end in one line on stderr and exit code 2, never a traceback.

Each case runs the real ``wattpay`` command line as a child process in its own directory.
"""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from bus.ports import free_port
from tests.live_harness import WATTPAY
from wattpay.instance import LOCK_FILE, STATE_FILE, claim_state_dir


def wattpay(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATTPAY_")}
    return subprocess.run(
        [*WATTPAY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**clean, **(env or {})},
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr
    return done.stderr


def test_sql_with_no_instance_and_no_dsn_says_how_and_creates_nothing(tmp_path: Path) -> None:
    done = wattpay(tmp_path, "sql", "SELECT 1")
    assert_one_line_error(done, "--clickhouse", "wattpay up", "--endpoint")
    assert list(tmp_path.iterdir()) == []


def test_sql_with_a_missing_chdb_directory_creates_nothing(tmp_path: Path) -> None:
    done = wattpay(tmp_path, "sql", "--clickhouse", f"chdb://{tmp_path / 'none'}", "SELECT 1")
    assert_one_line_error(done, "no ClickHouse data")
    assert list(tmp_path.iterdir()) == []


def test_sql_escapes_through_a_chdb_dsn(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    assert wattpay(tmp_path, "migrate", "--clickhouse", dsn).returncode == 0
    for query, reason in [
        ("SELECT file('/etc/shadow')", "function file() is not allowed"),
        ("SELECT count() FROM numbers(1e12)", "table function numbers() is not allowed"),
        ("SELECT * FROM system.users", "system.users is not allowed"),
        ("SELECT 1; DROP TABLE readings", "one valid statement"),
    ]:
        assert_one_line_error(wattpay(tmp_path, "sql", "--clickhouse", dsn, query), reason)
    debug = wattpay(tmp_path, "--debug", "sql", "--clickhouse", dsn, "SELECT file('/etc/shadow')")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    done = wattpay(tmp_path, "sql", "--clickhouse", dsn, "SELECT count() FROM readings")
    assert done.returncode == 0 and done.stdout.split()[-1] == "0"


def test_unreachable_brokers(tmp_path: Path) -> None:
    brokers = f"127.0.0.1:{free_port()}"
    ports = [str(free_port()) for _ in range(3)]
    done = wattpay(
        tmp_path,
        "up",
        "--brokers",
        brokers,
        "--state-dir",
        "state",
        "--clickhouse",
        f"chdb://{tmp_path / 'ch'}",
        "--query-port",
        ports[0],
        "--metrics-port",
        ports[1],
        "--billing-metrics-port",
        ports[2],
    )
    assert_one_line_error(done, brokers, "did not answer")
    assert not (tmp_path / "state" / STATE_FILE).exists()


@pytest.mark.parametrize(
    ("value", "reason"),
    [('"fast"', "must be a number of seconds"), ("-1", "must be zero or more seconds")],
)
def test_bad_batch_seconds(tmp_path: Path, value: str, reason: str) -> None:
    (tmp_path / "wattpay.toml").write_text(f"[clickhouse]\nbatch_seconds = {value}\n")
    assert_one_line_error(wattpay(tmp_path, "config", "--check"), "batch_seconds", reason)
    replay = wattpay(tmp_path, "replay", str(tmp_path))
    assert_one_line_error(replay, "batch_seconds", reason)


@pytest.mark.parametrize(
    "command",
    [
        ["account", "update", "A1", "--threshold", "-5"],
        [
            "account",
            "open",
            "A1",
            "--meter",
            "M1",
            "--plan",
            "zhejiang-tiered",
            "--threshold=-0.01",
        ],
        ["account", "update", "A1", "--threshold", "lots"],
    ],
)
def test_bad_low_balance_threshold(tmp_path: Path, command: list[str]) -> None:
    brokers = f"127.0.0.1:{free_port()}"  # nothing listens: the check comes first
    done = wattpay(tmp_path, *command, "--brokers", brokers)
    assert_one_line_error(done, "--threshold", "nothing published")


def test_config_check_masks_passwords_and_token_parameters(tmp_path: Path) -> None:
    env = {
        "WATTPAY_CLICKHOUSE_DSN": "https://analyst:pw-secret@127.0.0.1:8443/db"
        "?access_token=tok-secret&secret_key=key-secret&compress=1",
        "WATTPAY_QUERY_TOKEN": "query-secret",
        "WATTPAY_KAFKA_SASL_PASSWORD": "sasl-secret",
    }
    done = wattpay(tmp_path, "config", "--check", env=env)
    assert done.returncode == 0, done.stderr
    for value in ("pw-secret", "tok-secret", "key-secret", "query-secret", "sasl-secret"):
        assert value not in done.stdout
    shown = json.loads(done.stdout)
    assert shown["clickhouse_dsn"] == (
        "https://analyst:***@127.0.0.1:8443/db?access_token=***&secret_key=***&compress=1"
    )
    assert shown["query"]["token"] == "***"


def test_errors_about_a_clickhouse_server_do_not_show_its_secrets(tmp_path: Path) -> None:
    dsn = f"http://127.0.0.1:{free_port()}/db?access_token=tok-secret"
    for command in (["sql", "SELECT 1"], ["migrate"]):
        done = wattpay(tmp_path, *command, "--clickhouse", dsn)
        assert_one_line_error(done, "access_token=***")
        assert "tok-secret" not in done.stderr + done.stdout


def test_a_second_up_names_the_first_and_leaves_its_files(tmp_path: Path) -> None:
    state_dir = tmp_path / ".wattpay"
    lock = claim_state_dir(state_dir)  # this test process plays the first instance
    lock.write_state({"pid": os.getpid(), "query": "http://127.0.0.1:1", "brokers": "b:1"})
    before = {p.name: p.read_bytes() for p in state_dir.iterdir()}
    try:
        ports = [str(free_port()) for _ in range(3)]
        done = wattpay(
            tmp_path,
            "up",
            "--clickhouse",
            f"chdb://{tmp_path / 'other'}",
            "--query-port",
            ports[0],
            "--metrics-port",
            ports[1],
            "--billing-metrics-port",
            ports[2],
        )
        assert_one_line_error(done, f"pid {os.getpid()}", "http://127.0.0.1:1", "--state-dir")
        assert {p.name: p.read_bytes() for p in state_dir.iterdir()} == before
        assert not (tmp_path / "other").exists()
        assert stat.S_IMODE((state_dir / STATE_FILE).stat().st_mode) == 0o600
    finally:
        lock.release()
    assert not (state_dir / STATE_FILE).exists()
    assert (state_dir / LOCK_FILE).exists()


def test_up_will_not_serve_queries_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    done = wattpay(tmp_path, "up", "--host", "0.0.0.0")  # noqa: S104 - refused before binding
    assert_one_line_error(done, "without a token", "WATTPAY_QUERY_TOKEN")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["load"], ["billing", "--recovery-dir", "recovery"]])
def test_unreachable_brokers_for_the_loader_and_the_billing_flow(
    tmp_path: Path, command: list[str]
) -> None:
    brokers = f"127.0.0.1:{free_port()}"
    done = wattpay(tmp_path, *command, "--brokers", brokers)
    assert_one_line_error(done, brokers, "did not answer")


def test_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = wattpay(
            tmp_path,
            "up",
            "--clickhouse",
            f"chdb://{tmp_path / 'ch'}",
            "--metrics-port",
            port,
            "--query-port",
            str(free_port()),
            "--billing-metrics-port",
            str(free_port()),
        )
    assert_one_line_error(done, "port is already in use", "--metrics-port")
    assert not (tmp_path / ".wattpay" / STATE_FILE).exists()


def test_a_tests_first_start_of_up_draws_new_ports_when_one_was_taken(tmp_path: Path) -> None:
    # The test harnesses' own guard against another test binding a drawn port first; a
    # restart keeps its ports (tests/crash_harness.py restarts on them).
    import socket

    from tests.live_harness import PORT_TAKEN, Instance

    up = Instance(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", up.ports["metrics"]))
        taken.listen()
        drawn = dict(up.ports)
        state = up.start()
        try:
            assert up.ports["metrics"] != drawn["metrics"]
            assert state["metrics"][0] == f"http://127.0.0.1:{up.ports['metrics']}/metrics"
            assert PORT_TAKEN in (tmp_path / "up.log").read_text(encoding="utf-8")
        finally:
            up.stop()
