"""``wattpay up --simulate N``: simulated Modbus meters closing the prepaid loop (SPEC S13).

Simulated households (real load profiles) → Modbus poller → billing → meter commands →
relay executor → the simulated relays; scripted households top up some simulated hours
after their supply is cut, so a user watches them run low, fall into arrears, get cut
(consumption stops), top up and get reconnected (consumption resumes), in minutes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

from billing.clock import LOCAL_ZONE
from billing.messages import ACCOUNTS, PAYMENTS
from billing.outputs import NOTIFICATIONS
from billing.rules import BillingRules
from billing.tariffs import BUILTIN_PLANS
from bus.kafka import JsonProducer, assign, new_consumer, partitions_of
from config.settings import Settings
from meters.clock import SimClock
from meters.registers import load_registry

log = logging.getLogger(__name__)
WATTPAY = [sys.executable, "-m", "wattpay.cli"]
TOPUP_AMOUNT = Decimal("100.00")


def opening_balances(rules: BillingRules) -> tuple[Decimal, ...]:
    """Four kinds of household, by the configured rules.

    One about to get a low-balance alert, one about to fall into arrears, one about to
    exhaust the smallest overdraft, one comfortable.
    """
    return (
        rules.default_threshold + 1,
        Decimal("2.00"),
        -(rules.overdraft_min - 3),
        rules.default_threshold * 10,
    )


def household_plans(rules: BillingRules) -> tuple[str, str]:
    """A flat and a time-of-use plan of the configured catalog (built-in ids preferred)."""
    plans = sorted(rules.plans.values(), key=lambda p: (p.plan_id not in BUILTIN_PLANS, p.plan_id))
    flat = next(p.plan_id for p in plans if not p.is_tou)
    tou = next((p.plan_id for p in plans if p.is_tou), flat)
    return flat, tou


def default_start(now: datetime | None = None, days_back: int = 28) -> datetime:
    """A Monday 07:00 about four weeks back.

    Simulated time then stays behind the wall clock (readings from the future are refused)
    for hours at the default speed.
    """
    now = now or datetime.now(LOCAL_ZONE)
    day = (now - timedelta(days=days_back)).date()
    day -= timedelta(days=day.weekday())
    return datetime.combine(day, clock_time(7), tzinfo=LOCAL_ZONE)


@dataclass
class SimulationOptions:
    """How many meters, how fast, from when, and after how long households pay."""

    meters: int = 8
    speed: float = 360.0
    start: datetime | None = None
    model: str = "sdm120"
    pay_after: timedelta = timedelta(hours=2)
    poll_interval: str = "15m"


class SimulatedHouseholds:
    """The simulator, poller and executor processes plus the scripted households."""

    def __init__(
        self,
        options: SimulationOptions,
        settings: Settings,
        config: dict[str, str],
        state_dir: Path,
    ) -> None:
        self.options = options
        self.settings = settings
        self.config = config
        self.state_dir = state_dir
        self.registry_path = state_dir / "meters.toml"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stop_event = threading.Event()
        self.accounts: dict[str, str] = {}

    def start(self) -> None:
        """Start the meters, open their accounts, start polling, executing and paying."""
        options = self.options
        start = options.start or default_start()
        self.registry_path.unlink(missing_ok=True)
        self._spawn(
            "simulate",
            "--meters",
            str(options.meters),
            "--model",
            options.model,
            "--port",
            "0",
            "--speed",
            repr(options.speed),
            "--start",
            start.isoformat(),
            "--registry-out",
            str(self.registry_path),
        )
        deadline = time.monotonic() + 60
        while not self.registry_path.exists():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError("the meter simulator did not start")
            time.sleep(0.2)
        registry = load_registry(self.registry_path)
        assert registry.clock is not None  # noqa: S101 - the simulator always writes it
        self.clock = SimClock.from_spec(registry.clock)
        self._open_accounts([m.meter_id for m in registry.meters], start)
        brokers = self.config["bootstrap.servers"]
        self._spawn(
            "ingest",
            "modbus",
            "--registry",
            str(self.registry_path),
            "--brokers",
            brokers,
            "--interval",
            options.poll_interval,
        )
        self._spawn("execute", "--registry", str(self.registry_path), "--brokers", brokers)
        threading.Thread(target=self._pay_when_cut, name="households", daemon=True).start()

    def _spawn(self, *args: str) -> None:
        log_file = (self.state_dir / f"{args[0]}.log").open("ab")
        env = {**os.environ, **self.settings.child_environment()}  # same prefix and rules
        self.processes.append(
            subprocess.Popen([*WATTPAY, *args], stdout=log_file, stderr=log_file, env=env)  # noqa: S603
        )

    def _open_accounts(self, meter_ids: list[str], start: datetime) -> None:
        balances = opening_balances(self.settings.rules)
        flat, tou = household_plans(self.settings.rules)
        with JsonProducer(self.config) as producer:
            for index, meter_id in enumerate(sorted(meter_ids)):
                account_id = f"H{index + 1:04d}"
                self.accounts[account_id] = meter_id
                producer.send(
                    self.settings.topic(ACCOUNTS),
                    account_id,
                    {
                        "type": "open",
                        "account_id": account_id,
                        "meter_id": meter_id,
                        "plan": tou if index % 3 == 2 else flat,
                        "ts": (start - timedelta(minutes=1)).isoformat(),
                        "opening_balance": str(balances[index % len(balances)]),
                        "phone": f"1380000{index + 1:04d}",
                        "locale": "zh-CN",
                        "landlord_id": "L001",
                    },
                )

    def _pay_when_cut(self) -> None:
        """Households top up ``pay_after`` simulated time after their supply is cut."""
        topic = self.settings.topic(NOTIFICATIONS)
        consumer = new_consumer(self.config, "wattpay-simulated-households")
        assign(consumer, ((topic, p, None) for p in partitions_of(consumer, topic)))
        due: dict[str, datetime] = {}
        paid: set[str] = set()
        with JsonProducer(self.config) as producer:
            while not self.stop_event.is_set():
                for message in consumer.consume(100, 0.5):
                    if message.error() is not None:
                        continue
                    value = json.loads(message.value())
                    account_id = value.get("account_id")
                    if value.get("type") == "disconnected" and account_id in self.accounts:
                        cut_at = datetime.fromisoformat(value["ts"])
                        due.setdefault(
                            f"{account_id}@{value['ts']}", cut_at + self.options.pay_after
                        )
                now = self.clock.now()
                for key, when in list(due.items()):
                    if when <= now and key not in paid:
                        account_id = key.split("@", 1)[0]
                        producer.send(
                            self.settings.topic(PAYMENTS),
                            account_id,
                            {
                                "type": "topup",
                                "payment_id": f"SIM-{key}",
                                "account_id": account_id,
                                "amount": str(TOPUP_AMOUNT),
                                "channel": "wechat",
                                "ts": now.replace(microsecond=0).isoformat(),
                            },
                        )
                        producer.flush()
                        paid.add(key)
                        log.info("%s topped up %s yuan", account_id, TOPUP_AMOUNT)
        consumer.close()

    def stop(self) -> None:
        """Stop the households, the poller, the executor and the simulator."""
        self.stop_event.set()
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
