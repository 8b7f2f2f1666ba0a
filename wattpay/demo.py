"""``wattpay demo``: the live system with simulated households, narrated until the loop closes.

Runs ``wattpay up --simulate`` in this process and prints alerts, cuts, top-ups and
reconnections as they happen (simulated time, a day every couple of minutes). Once a
household has been cut off and reconnected it prints the web pages to open and keeps the
system running for them until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from bus.kafka import assign, new_consumer, partitions_of
from bus.ports import free_port, port_is_free
from bus.topics import NOTICES, RESULTS
from config.settings import Settings
from simulate.households import SimulationOptions
from wattpay.up import Up, UpOptions

WATCHED = (NOTICES.name, RESULTS.name)
GOAL = {"low_balance", "arrears", "disconnected", "reconnected"}
LANDLORD = "L001"  # the simulated households' landlord (simulate/households.py)


def describe(topic: str, value: dict) -> str | None:
    """One line for a household event or a relay confirmation."""
    if topic.endswith(RESULTS.name):
        action = str(value.get("command_id", "")).split(":", 1)[0]
        state = "opened (supply cut)" if action == "disconnect" else "closed (supply back)"
        verdict = state if value.get("ok") else f"FAILED: {value.get('error')}"
        return f"{value.get('ts', '')[:16]}  meter {value['meter_id']}: relay {verdict}"
    data = value.get("data", {})
    kind = value.get("type")
    who = f"{value.get('ts', '')[:16]}  {value.get('account_id')}"
    lines = {
        "low_balance": f"low balance: {data.get('available')} yuan left"
        + (f", about {data['days_left']} days" if "days_left" in data else ""),
        "arrears": f"in arrears: {data.get('available')} (overdraft {data.get('overdraft_limit')})",
        "disconnect_scheduled": f"cut scheduled for {data.get('scheduled_for', '')[:16]}",
        "disconnected": f"supply cut: {data.get('available')} < -{data.get('overdraft_limit')}",
        "topup_received": f"topped up {data.get('amount')} via {data.get('channel')}",
        "reconnected": f"reconnected, available {data.get('available')}",
        "consumption_while_disconnected": f"consumption while cut: {data.get('kwh')} kWh",
    }
    return f"{who} {lines[kind]}" if kind in lines else None


def run_demo(
    settings: Settings, state_dir: Path, *, meters: int, speed: float, timeout: float
) -> int:
    """Bring the system up with simulated meters, narrate, stop when the loop has closed."""
    options = UpOptions(
        state_dir=state_dir,
        query_port=free_port(),
        metrics_port=free_port(),
        billing_metrics_port=free_port(),
        partitions=2,
        epoch_seconds=1.0,
        simulation=SimulationOptions(meters=meters, speed=speed),
    )
    if "WATTPAY_WEB_PORT" not in os.environ and not port_is_free(8080):
        os.environ["WATTPAY_WEB_PORT"] = str(free_port())  # 8080 is taken: any free port
    up = Up(settings, options)
    up.start()
    print(
        f"wattpay is up with {meters} simulated meters ({speed:g}× time); "
        f"watching households (Ctrl-C to stop)",
        flush=True,
    )
    consumer = new_consumer(up.config, "wattpay-demo")
    topics = [settings.topic(name) for name in WATCHED]
    assign(consumer, ((topic, p, None) for topic in topics for p in partitions_of(consumer, topic)))
    seen: set[str] = set()
    household = "H0001"
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while time.monotonic() < deadline and not GOAL <= seen:
            for message in consumer.consume(100, 0.5):
                if message.error() is not None:
                    continue
                value = json.loads(message.value())
                seen.add(str(value.get("type", "")))
                if value.get("type") == "reconnected":
                    household = str(value.get("account_id", household))
                line = describe(message.topic(), value)
                if line:
                    print(line, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        consumer.close()
    closed = GOAL <= seen
    print(
        "the prepaid loop closed: alerts, a cut and a reconnection"
        if closed
        else f"stopped before the loop closed (seen: {sorted(seen)})",
        flush=True,
    )
    if not interrupted:
        serve_until_interrupted(up.web.url, household)
    up.stop()
    return 0 if closed else 1


def serve_until_interrupted(url: str, household: str) -> None:
    """Print where the web pages are and keep the system running until Ctrl-C."""
    print(
        "\nthe web pages of the running system (they refresh by themselves):\n"
        f"  operations  {url}/\n"
        f"  household   {url}/accounts/{household}   (?lang=en for English)\n"
        f"  landlord    {url}/landlords/{LANDLORD}\n"
        f"  JSON API    {url}/api/accounts/{household}   (described in {url}/api/openapi.json)\n"
        "Ctrl-C stops.",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
