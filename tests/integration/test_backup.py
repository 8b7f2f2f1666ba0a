"""`wattpay backup` of a running `wattpay up` under a feed, restored elsewhere (issue 18).

An example set is fed to `up`; halfway, `wattpay backup` copies the running installation. The
copy is restored into a clean directory and brought up beside the original, and the inputs it
does not hold (those sent after the backup) are fed to it in the same order. Both then bill
the whole feed: the restored one must end with the original's balances, ledger, daily usage,
points and events, every balance equal to its opening balance plus its ledger, and no ledger
entry twice.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from simulate.example import write_example
from tests.crash_harness import INPUT_TOPICS, Feeder, UpProcess, feed_messages, read_values
from tests.integration.test_crash import opening_balances
from tests.live_harness import TABLE_QUERIES, WATTPAY, settled, wait_until

pytestmark = [pytest.mark.live]
COMPARED = ("ledger", "daily_usage", "points_ledger", "accounts", "events")


def query(state: dict, sql: str) -> list[dict]:
    """A query answered by a running `up`'s query endpoint."""
    url = f"{state['query']}/query?" + urllib.parse.urlencode({"sql": sql, "format": "json"})
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def billed(up: UpProcess) -> dict[str, list[dict]]:
    return {name: query(up.state, TABLE_QUERIES[name]) for name in COMPARED}


def wattpay(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [*WATTPAY, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_backup_under_load_restores_elsewhere_with_the_same_balances(tmp_path: Path) -> None:
    inputs = tmp_path / "example"
    write_example(inputs, households=4, days=2, seed=7)
    messages = feed_messages(inputs)
    original = UpProcess(tmp_path / "original")
    original.work.mkdir()
    restored = UpProcess(tmp_path / "restored")
    restored.work.mkdir()
    feeder = Feeder(messages, pause=0.03)
    feeder.connect(original.start()["brokers"])
    feeder.start()
    try:
        wait_until(lambda: feeder.sent >= len(messages) // 2, 120, "half the feed sent")
        said = wattpay("backup", str(tmp_path / "copy"), cwd=original.work)
        assert "running, stopped for" in said, said
        assert feeder.sent < len(messages), "the backup was not taken under load"
        wattpay(
            "restore",
            str(tmp_path / "copy"),
            "--state-dir",
            str(restored.state_dir),
            "--clickhouse-dir",
            str(restored.work / "clickhouse"),
            cwd=tmp_path,
        )
        wrong = subprocess.run(
            [*WATTPAY, "up", "--clickhouse", f"chdb://{tmp_path / 'empty'}"],
            cwd=restored.work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert wrong.returncode == 2 and "restored from a backup" in wrong.stderr, wrong.stderr
        bootstrap = restored.start()["brokers"]
        # What the copy holds was fed in order; the rest goes to the restored broker after it.
        held = Counter(read_values(bootstrap, INPUT_TOPICS, settle=3.0))
        assert 0 < sum(held.values()) < len(messages)
        rest = []
        for message in messages:
            if held[message[2]] > 0:
                held[message[2]] -= 1
            else:
                rest.append(message)
        assert not +held, "the copy holds inputs that were never fed"
        feeder.join(timeout=180)
        assert feeder.error is None and not feeder.is_alive()
        catch_up = Feeder(rest, pause=0.0)
        catch_up.connect(bootstrap)
        catch_up.start()
        catch_up.join(timeout=180)
        assert catch_up.error is None and not catch_up.is_alive()
        for up in (original, restored):
            wait_until(up.has_sentinel, 240, "the last input billed and loaded", interval=1.0)
        want = settled(lambda: billed(original), original.loaded_everything)
        got = settled(lambda: billed(restored), restored.loaded_everything)
    finally:
        for up in (restored, original):
            if up.process is not None:
                up.stop()
    for table in COMPARED:
        assert got[table] == want[table], table
    assert got["ledger"] and got["accounts"]
    ledger = got["ledger"]
    assert not [e for e, n in Counter(r["entry_id"] for r in ledger).items() if n > 1]
    movements: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger:
        movements[row["account_id"]] += Decimal(row["amount"])
    opening = opening_balances([m[2] for m in messages])
    for account in got["accounts"]:
        start = opening[account["account_id"]]
        assert Decimal(account["balance"]) == start + movements[account["account_id"]], account
