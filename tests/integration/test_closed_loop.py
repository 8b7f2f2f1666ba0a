"""The prepaid loop closed end to end: `wattpay up --simulate` with simulated Modbus meters.

Households run low, fall into arrears, are cut (the relay opens and the register stops),
top up, and are reconnected (the relay closes and consumption resumes), all on the real
broker, the real Modbus TCP simulator, the poller, billing and the relay executor. The
settings file names topic prefix ``acme.``: every process of the loop must honour it.
"""

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from bus.kafka import cluster_info, consume_json
from tests.live_harness import Instance, wait_until

pytestmark = pytest.mark.live
METERS = 4  # households H0001…H0004: low balance, arrears, overdraft exhausted, comfortable


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    settings = tmp_path_factory.mktemp("settings") / "acme.toml"  # not in the working directory
    settings.write_text('[kafka]\ntopic_prefix = "acme."\n', encoding="utf-8")
    running = Instance(tmp_path_factory.mktemp("loop"))
    running.start("--simulate", str(METERS), "--speed", "1440", config=settings)
    yield running
    running.stop()


def events(instance: Instance, kind: str) -> list[dict]:
    return instance.sql(
        f"SELECT account_id, meter_id, ts, data FROM events FINAL WHERE type = '{kind}' ORDER BY ts"
    )


def test_households_are_cut_and_reconnected_and_their_meters_follow(loop: Instance) -> None:
    explain = loop.log_tail  # a failed wait shows what the instance logged
    wait_until(lambda: events(loop, "low_balance"), 120, "a low-balance alert", explain=explain)
    wait_until(lambda: events(loop, "arrears"), 120, "an arrears alert", explain=explain)
    wait_until(
        lambda: events(loop, "reconnected"),
        300,
        "a cut household to top up and reconnect",
        explain=explain,
    )
    cut = events(loop, "disconnected")[0]
    back = [e for e in events(loop, "reconnected") if e["account_id"] == cut["account_id"]][0]
    meter = cut["meter_id"]
    # The executor switched the simulated relay both ways and confirmed it.
    results = [
        v
        for _, v in consume_json(
            {"bootstrap.servers": loop.state["brokers"]},
            "acme.meter-command-results",
            timeout=20,
        )
    ]
    mine = [r for r in results if r["meter_id"] == meter]
    assert any(r["ok"] and r["command_id"].startswith("disconnect:") for r in mine)
    assert any(r["ok"] and r["command_id"].startswith("reconnect:") for r in mine)
    # While cut, the register stood still; after the reconnection it moves again.
    cut_at = datetime.fromisoformat(cut["ts"])
    back_at = datetime.fromisoformat(back["ts"])

    def readings() -> list[dict]:
        return loop.sql(
            f"SELECT ts, energy_kwh FROM readings FINAL WHERE meter_id = '{meter}' ORDER BY ts"
        )

    def moving_again() -> bool:
        after = [
            Decimal(r["energy_kwh"])
            for r in readings()
            if datetime.fromisoformat(r["ts"]) > back_at
        ]
        return len(after) >= 3 and after[-1] > after[0]

    wait_until(moving_again, 120, "consumption to resume after the reconnection")
    rows = readings()
    # Allow one polling interval for the command to reach the relay.
    frozen = [
        Decimal(r["energy_kwh"])
        for r in rows
        if cut_at.timestamp() + 1800
        < datetime.fromisoformat(r["ts"]).timestamp()
        < back_at.timestamp()
    ]
    assert len(frozen) >= 2 and len(set(frozen)) == 1, frozen
    account = cut["account_id"]
    topups = loop.sql(
        f"SELECT amount FROM ledger FINAL WHERE account_id = '{account}' AND kind = 'topup'"
    )
    assert topups and Decimal(topups[0]["amount"]) == Decimal("100.00")
    assert Decimal(json.loads(back["data"])["available"]) > 0
    topics = cluster_info({"bootstrap.servers": loop.state["brokers"]}).topics
    assert {"acme.readings", "acme.meter-commands", "acme.facts"} <= set(topics)
    assert not [name for name in topics if name.startswith("wattpay.")]
