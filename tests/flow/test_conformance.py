"""Replay the published conformance sets with ``wattpay replay`` and check every row via SQL."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance import differences, load_expected
from tests.paths import CONFORMANCE

WATTPAY = [sys.executable, "-m", "wattpay.cli"]

TABLE_QUERIES = {
    "daily_usage": "SELECT * FROM daily_usage FINAL ORDER BY account_id, day",
    "ledger": "SELECT * FROM ledger FINAL ORDER BY account_id, seq",
    "points_ledger": "SELECT * FROM points_ledger FINAL ORDER BY account_id, seq",
    "accounts": "SELECT * FROM accounts FINAL ORDER BY account_id",
    "rejected": "SELECT * FROM rejected FINAL ORDER BY rejection_id",
}
TOPIC_FILES = {
    "notifications": "wattpay.notifications.jsonl",
    "commands": "wattpay.meter-commands.jsonl",
    "payment_requests": "wattpay.payment-requests.jsonl",
}


def sql(dsn: str, query: str) -> list[dict]:
    done = subprocess.run(
        [*WATTPAY, "sql", query, "--clickhouse", dsn, "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def replay_results(
    sample: Path, tmp_path: Path, workers: int = 1, processes: int = 1
) -> dict[str, list[dict]]:
    work = tmp_path / sample.name
    shutil.copytree(sample, work)
    work.chmod(0o755)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    subprocess.run(
        [*WATTPAY, "replay", str(work), "--clickhouse", dsn, "--quiet"]
        + ["--workers", str(workers), "--processes", str(processes)],
        check=True,
        timeout=300,
    )
    actual = {section: sql(dsn, query) for section, query in TABLE_QUERIES.items()}
    for section, name in {**TOPIC_FILES, "dlq": "wattpay.dlq.jsonl"}.items():
        path = work / "out" / name  # none where no message went to its topic
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        actual[section] = [json.loads(line) for line in lines]
    return actual


@pytest.mark.parametrize("name", ["sample1", "sample2"])
def test_replay_matches_conformance_set(name: str, tmp_path: Path) -> None:
    sample = CONFORMANCE / name
    actual = replay_results(sample, tmp_path)
    assert differences(load_expected(sample), actual) == {}
    # Every rejected input is also on the DLQ, with the same reason, exactly once.
    assert sorted((r["rejection_id"], r["reason"]) for r in actual["rejected"]) == sorted(
        (m["rejection_id"], m["reason"]) for m in actual["dlq"]
    )
    # Every input line is applied or rejected: the manifest's line counts add up.
    manifest = json.loads((sample / "manifest.json").read_text(encoding="utf-8"))
    accepted = sql(
        f"chdb://{tmp_path / 'clickhouse'}",
        "SELECT count() AS n FROM readings FINAL WHERE source NOT IN ('final', 'initial')",
    )[0]["n"]
    rejected_readings = sum(1 for r in actual["rejected"] if r["topic"] == "wattpay.readings")
    assert int(accepted) + rejected_readings == manifest["lines"]["readings"]


def test_replay_with_two_workers_matches(tmp_path: Path) -> None:
    sample = CONFORMANCE / "sample1"
    actual = replay_results(sample, tmp_path, workers=2)
    assert differences(load_expected(sample), actual) == {}


@pytest.mark.parametrize("name", ["sample1", "sample2"])
def test_replay_as_a_two_process_cluster_matches(name: str, tmp_path: Path) -> None:
    """The second process bills its share of the accounts; the first writes every row."""
    sample = CONFORMANCE / name
    actual = replay_results(sample, tmp_path, workers=2, processes=2)
    assert differences(load_expected(sample), actual) == {}


def test_a_meter_moving_between_processes_bills_as_in_one_process(tmp_path: Path) -> None:
    """A meter that passes between accounts billed by different processes of a cluster."""
    from tests.flow.test_flow import _moved_meters

    (tmp_path / "moved").mkdir()
    moved = _moved_meters(tmp_path / "moved", 2, 1)
    one = replay_results(moved, tmp_path / "one")
    two = replay_results(moved, tmp_path / "two", processes=2)
    assert one["ledger"] and one["rejected"] and one["notifications"]
    for section in one:  # the topic files' lines are in the order their writers got them
        assert sorted(map(json.dumps, two[section])) == sorted(map(json.dumps, one[section]))
