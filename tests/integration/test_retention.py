"""Retention on the embedded broker of `wattpay up` (wattpay/retention.py), with ages of zero.

An example set is fed and billed; the janitor must then remove the facts the loader committed
and the readings behind the recovery snapshot, keep every account event, and leave a system
that a SIGKILL does not disturb: after a restart the tables are what they were, and new input
is billed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulate.example import write_example
from tests.crash_harness import SENTINEL, Feeder, UpProcess, feed_messages, read_values
from tests.integration.test_backup import COMPARED, query
from tests.live_harness import TABLE_QUERIES, metric, settled, wait_until
from wattpay.durable import BUCKET
from wattpay.retention import BatchObjects

pytestmark = [pytest.mark.live]
LATE = "ZZ-LATE"


def first_offsets(up: UpProcess, topic: str) -> dict[int, int]:
    """The first offset still stored in each partition of ``topic``."""
    s3 = up.state_dir / "s3"
    port = json.loads((s3 / "ports.json").read_text())["s3.port"]
    objects = BatchObjects(
        f"http://127.0.0.1:{port}", BUCKET, (s3 / "cluster-id").read_text().strip()
    )
    return {p: min(b.offset for b in batches) for p, batches in objects.partitions(topic).items()}


def billed(up: UpProcess) -> dict[str, list[dict]]:
    return {
        name: [r for r in query(up.state, TABLE_QUERIES[name]) if r.get("account_id") != LATE]
        for name in COMPARED
    }


def test_retention_removes_what_is_loaded_and_recovered_and_a_crash_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "wattpay.toml"
    settings.write_text("[retention]\nderived_hours = 0\ninput_days = 0\ninterval_seconds = 1\n")
    monkeypatch.setenv("WATTPAY_CONFIG", str(settings))
    write_example(tmp_path / "example", households=3, days=2, seed=5)
    messages = feed_messages(tmp_path / "example")
    up = UpProcess(tmp_path / "up")
    up.work.mkdir()
    feeder = Feeder(messages, pause=0.0)
    feeder.connect(up.start()["brokers"])
    feeder.start()
    try:
        feeder.join(timeout=180)
        assert feeder.error is None and not feeder.is_alive()
        wait_until(up.has_sentinel, 240, "the last input billed and loaded", interval=1.0)
        # Facts and readings span many batches per partition; a partition's last one stays.
        for topic in ("wattpay.facts", "wattpay.readings"):
            wait_until(
                lambda t=topic: all(first_offsets(up, t).values()),
                60,
                f"retention on every partition of {topic}",
            )
        assert 0 in first_offsets(up, "wattpay.accounts").values()  # account events stay
        assert metric(up.ports["metrics"], "wattpay_retention_batches_removed_total") > 0
        before = settled(lambda: billed(up), up.loaded_everything)
        assert before["ledger"] and before["accounts"]
        # Every reader from the start still ends: the removed offsets are a gap it skips.
        left = read_values(up.state["brokers"], ("wattpay.readings",), settle=3.0)
        assert 0 < len(left) < sum(1 for m in messages if m[0] == "wattpay.readings")

        up.kill_group()
        late = {"type": "open", "account_id": LATE, "meter_id": "M-LATE", "plan": "zhejiang-tiered"}
        late["ts"] = json.loads(messages[-1][2])["ts"]
        catch_up = Feeder([("wattpay.accounts", LATE.encode(), json.dumps(late).encode())])
        catch_up.connect(up.start()["brokers"])
        catch_up.start()
        catch_up.join(timeout=60)
        assert catch_up.error is None
        wait_until(
            lambda: (
                query(up.state, f"SELECT count() AS n FROM accounts WHERE account_id = '{LATE}'")[
                    0
                ]["n"]
                == 1
            ),
            120,
            "new input billed after the restart",
        )
        wait_until(up.loaded_everything, 60, "every fact loaded", interval=0.5)
        after = billed(up)
        assert query(up.state, f"SELECT count() AS n FROM accounts WHERE account_id = '{SENTINEL}'")
    finally:
        if up.process is not None:
            up.stop()
    for table in COMPARED:
        assert after[table] == before[table], table
