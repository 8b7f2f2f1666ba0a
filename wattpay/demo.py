"""``wattpay demo``: the live system with simulated households, narrated until the loop closes.

Runs ``wattpay up --simulate`` in this process and prints alerts, cuts, top-ups and
reconnections as they happen (simulated time, a day every couple of minutes), then stops
once a household has been cut off and reconnected.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from config.settings import Settings
from simulate.households import SimulationOptions
from sinks.kafka import assign, new_consumer, partitions_of
from wattpay.broker import free_port
from wattpay.up import Up, UpOptions

WATCHED = ("notifications", "meter-command-results")
GOAL = {"low_balance", "arrears", "disconnected", "reconnected"}


def describe(topic: str, value: dict) -> str | None:
    """One line for a household event or a relay confirmation."""
    if topic.endswith("meter-command-results"):
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
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not GOAL <= seen:
            for message in consumer.consume(100, 0.5):
                if message.error() is not None:
                    continue
                value = json.loads(message.value())
                seen.add(str(value.get("type", "")))
                line = describe(message.topic(), value)
                if line:
                    print(line, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        up.stop()
    closed = GOAL <= seen
    print(
        "the prepaid loop closed: alerts, a cut and a reconnection"
        if closed
        else f"stopped before the loop closed (seen: {sorted(seen)})",
        flush=True,
    )
    return 0 if closed else 1
