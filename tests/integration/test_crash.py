"""`wattpay up` killed whole, and its broker and S3 store killed alone, under a steady feed (S10).

Each run feeds the same example set (see tests/crash_harness.py) into a fresh `wattpay up`
with the default durable broker. The uninterrupted run is the reference. A run whose whole
process group is SIGKILLed three times at random moments, and whose broker and then S3
store are SIGKILLed alone while `up` runs, must end with the same tables, the same
balances, every input on its topic and every output id of the reference on its topic.

An input may reach its topic twice: a produce request the broker was still writing when
its S3 store died can land after the feed, not told it landed, has sent it again. Billing
must then reject the copy (S6, S14.2): the money tables stay those of the reference, and
the rejections are the reference's plus exactly one per copy.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from bus.kafka import consume_json
from simulate.example import write_example
from store.clickhouse import ClickHouseStore
from store.facts import decode_facts
from tests.crash_harness import INPUT_TOPICS, Feeder, UpProcess, feed_messages, read_values
from tests.hostile import original_bytes
from tests.live_harness import output_ids, tables, wait_until
from wattpay.durable import EmbeddedKafka

pytestmark = [pytest.mark.live, pytest.mark.slow]
COMPARED = ("ledger", "daily_usage", "points_ledger", "accounts", "events")


@dataclass
class Outcome:
    tables: dict[str, list[dict]]
    ids: dict[str, set[str]]
    inputs: Counter[bytes]
    account_facts: list[dict]
    fed: list[bytes]
    refused: Counter[tuple[str, bytes, str]]
    """Each rejection as (topic, the input's bytes, reason): what the offsets do not change."""
    dead_letters: Counter[tuple[str, bytes, str]]
    """The DLQ the same way (one per rejection id)."""
    log: str = ""
    sent_at_kills: tuple[int, ...] = ()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("example")
    write_example(directory, households=8, days=3, seed=5)
    return directory


def run(inputs: Path, work: Path, *, kills: int = 0, servers: bool = False) -> Outcome:
    """Feed the inputs through `wattpay up`, killing it, then its servers, on the way.

    An interrupted run feeds slowly enough (about 30 s of `up` time) for every kill to land
    while the feed goes on; the reference run feeds as fast as the flush discipline allows.
    """
    chance = random.Random(len(str(work)) + kills)
    messages = feed_messages(inputs)
    feeder = Feeder(messages, pause=0.15 if kills or servers else 0.02)
    up = UpProcess(work)
    feeder.connect(up.start()["brokers"])
    feeder.start()
    sent_at_kills = []
    try:
        for _ in range(kills):
            time.sleep(chance.uniform(1.0, 4.0))
            sent_at_kills.append(feeder.sent)
            feeder.disconnect()
            up.kill_group()
            feeder.connect(up.start()["brokers"])
        if servers:
            for pid_file in ("broker.pid", "s3/weed.pid"):
                time.sleep(chance.uniform(1.0, 4.0))
                old = up.pid(pid_file)
                assert old is not None, pid_file
                os.kill(old, signal.SIGKILL)
                wait_until(
                    lambda f=pid_file, o=old: up.pid(f) not in (None, o), 90, f"{pid_file} back"
                )
        feeder.join(timeout=300)
        assert feeder.error is None, feeder.error
        assert not feeder.is_alive(), f"the feed is stuck after {feeder.sent} messages"
        wait_until(up.has_sentinel, 240, "the last input billed and loaded", interval=2.0)
    finally:
        assert up.stop() == 0, (work / "up.log").read_text()[-3000:]
    result = tables(up.dsn)
    with ClickHouseStore(up.dsn) as store:
        _, rows = store.query("SELECT topic, payload, payload_base64, reason FROM rejected FINAL")
    refused = Counter((r[0], original_bytes(r[1], r[2]), r[3]) for r in rows)
    kafka = EmbeddedKafka(up.state_dir).start()  # the topics outlive `up`
    try:
        ids = output_ids(kafka)  # type: ignore[arg-type]
        letters = {
            v["rejection_id"]: (
                v["topic"],
                original_bytes(v["payload"], v["payload_base64"]),
                v["reason"],
            )
            for _, v in consume_json(kafka.config, "wattpay.dlq", timeout=20)
        }
        bootstrap = kafka.config["bootstrap.servers"]
        # A partition can end in offsets the broker never wrote (tests/crash_harness.py).
        fed = Counter(read_values(bootstrap, INPUT_TOPICS, settle=5.0))
        account_facts = [
            row.values
            for fact in read_values(bootstrap, ("wattpay.facts",), settle=5.0)
            for row in decode_facts(fact)
            if row.table == "accounts"
        ]
    finally:
        kafka.stop()
    log = (work / "up.log").read_text(errors="replace")
    fed_messages = [m[2] for m in messages]
    return Outcome(
        result,
        ids,
        fed,
        account_facts,
        fed_messages,
        refused,
        Counter(letters.values()),
        log,
        tuple(sent_at_kills),
    )


@pytest.fixture(scope="module")
def reference(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run(inputs, tmp_path_factory.mktemp("uninterrupted"))


def opening_balances(fed: list[bytes]) -> dict[str, Decimal]:
    """Opening balance of every account opened by the feed (the first valid `open` wins)."""
    opening: dict[str, Decimal] = {}
    for raw in fed:
        try:
            event = json.loads(raw)
            if event.get("type") == "open" and event["account_id"] not in opening:
                opening[event["account_id"]] = Decimal(event.get("opening_balance", "0.00"))
        except (ValueError, KeyError, TypeError, ArithmeticError, AttributeError):
            continue
    return opening


def assert_same_money(got: Outcome, want: Outcome) -> None:
    # On a difference, say what else differs and what the run went through.
    events = [line for line in got.log.splitlines() if "restart" in line or "exited" in line]
    context = f"intervals {got.tables['intervals']} vs {want.tables['intervals']}; {events}"
    for table in COMPARED:
        assert got.tables[table] == want.tables[table], f"{table}: {context}"
    # Every input on its topic: the feed lost none. A copy the broker kept twice is rejected,
    # once per copy, and nothing else is; with no copy the rejections are the reference's:
    # the same inputs for the same reasons. Not the same ids: an id holds its input's offset,
    # and the feed sends again, after a kill, what the broker does not hold of a group whose
    # other messages (a batch of another partition, or a later batch) did land, so offsets
    # can differ from the reference's without any message lost or doubled.
    assert not Counter(got.fed) - got.inputs
    copies = got.inputs - Counter(got.fed)
    if not copies:
        assert got.refused == want.refused
        assert len(got.tables["rejected"]) == len(want.tables["rejected"])
    assert not want.refused - got.refused
    assert Counter(raw for _, raw, _ in (got.refused - want.refused).elements()) == copies
    ledger = got.tables["ledger"]
    assert not [e for e, n in Counter(r["entry_id"] for r in ledger).items() if n > 1]
    movements: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger:
        movements[row["account_id"]] += Decimal(row["amount"])
    opening = opening_balances(got.fed)
    for account in got.tables["accounts"]:
        start = opening[account["account_id"]]
        assert Decimal(account["balance"]) == start + movements[account["account_id"]], account
    # A version is never reused for another state, and the table shows the latest one.
    states: dict[tuple[str, int], set[str]] = defaultdict(set)
    latest: dict[str, int] = {}
    for fact in got.account_facts:
        key = (fact["account_id"], int(fact["version"]))
        states[key].add(repr(sorted((k, str(v)) for k, v in fact.items() if k != "updated_at")))
        latest[key[0]] = max(latest.get(key[0], 0), key[1])
    assert not {key: s for key, s in states.items() if len(s) > 1}
    assert {a["account_id"]: int(a["version"]) for a in got.tables["accounts"]} == latest
    # The DLQ holds what `rejected` holds, compared above by input and reason. Its ids are
    # offsets, which a resend after a kill shifts (as above), copies or not.
    assert got.dead_letters == got.refused
    for topic, expected in want.ids.items():
        if topic != "dlq":
            assert expected <= got.ids[topic], topic


def test_uninterrupted_run_is_consistent(reference: Outcome) -> None:
    assert_same_money(reference, reference)
    assert reference.ids["notifications"] and reference.tables["ledger"]


def test_up_killed_three_times_then_its_broker_and_its_store_lose_nothing(
    inputs: Path, reference: Outcome, tmp_path: Path
) -> None:
    """SIGKILL of the whole process group three times, then of the broker alone, then of
    the S3 store alone while `up` runs (one run: each `up` start costs seconds)."""
    outcome = run(inputs, tmp_path, kills=3, servers=True)
    # Every kill of `up` landed while the feed went on; `up` brought both servers back.
    assert len(outcome.sent_at_kills) == 3
    assert all(0 < sent < len(outcome.fed) for sent in outcome.sent_at_kills)
    assert outcome.log.count("wattpay is up") == 4
    assert "S3 store restarted after exit code -9" in outcome.log
    assert "after exit code -9" in outcome.log.split("broker restarted on", 1)[1]
    assert_same_money(outcome, reference)


def test_in_memory_broker_killed_stops_up_with_a_reason(tmp_path: Path) -> None:
    """Its topics cannot come back, so `up` stops cleanly and says why."""
    up = UpProcess(tmp_path)
    up.start("--memory-broker")
    pid = up.pid("broker.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert up.process is not None
    assert up.process.wait(120) == 1
    log = (tmp_path / "up.log").read_text()
    assert "the in-memory broker" in log and "its topics are gone" in log
    assert not (up.state_dir / "s3").exists()
