"""``wattpay up --simulate N``: simulated Modbus meters closing the prepaid loop (SPEC S13).

Simulated households (real load profiles) → Modbus poller → billing → meter commands →
relay executor → the simulated relays; scripted households top up some simulated hours
after their supply is cut, so a user watches them run low, fall into arrears, get cut
(consumption stops), top up and get reconnected (consumption resumes), in minutes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from billing.clock import LOCAL_ZONE
from ingest.clock import SimClock
from ingest.registers import load_registry
from sinks.kafka import JsonProducer

log = logging.getLogger(__name__)
WATTPAY = [sys.executable, "-m", "wattpay.cli"]
# Opening balances cycle through four kinds of household: one about to get a low-balance
# alert, one about to fall into arrears, one about to exhaust its overdraft, one comfortable.
OPENING_BALANCES = (Decimal("21.00"), Decimal("2.00"), Decimal("-7.00"), Decimal("200.00"))
TOPUP_AMOUNT = Decimal("100.00")


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
        self, options: SimulationOptions, config: dict[str, str], prefix: str, state_dir: Path
    ) -> None:
        self.options = options
        self.config = config
        self.prefix = prefix
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
        self.processes.append(subprocess.Popen([*WATTPAY, *args], stdout=log_file, stderr=log_file))  # noqa: S603

    def _open_accounts(self, meter_ids: list[str], start: datetime) -> None:
        with JsonProducer(self.config) as producer:
            for index, meter_id in enumerate(sorted(meter_ids)):
                account_id = f"H{index + 1:04d}"
                self.accounts[account_id] = meter_id
                producer.send(
                    self.prefix + "accounts",
                    account_id,
                    {
                        "type": "open",
                        "account_id": account_id,
                        "meter_id": meter_id,
                        "plan": "zhejiang-tou" if index % 3 == 2 else "zhejiang-tiered",
                        "ts": (start - timedelta(minutes=1)).isoformat(),
                        "opening_balance": str(OPENING_BALANCES[index % len(OPENING_BALANCES)]),
                        "phone": f"1380000{index + 1:04d}",
                        "locale": "zh-CN",
                        "landlord_id": "L001",
                    },
                )

    def _pay_when_cut(self) -> None:
        """Households top up ``pay_after`` simulated time after their supply is cut."""
        topic = self.prefix + "notifications"
        consumer = Consumer(
            {
                **self.config,
                "group.id": "wattpay-simulated-households",
                "enable.auto.commit": "false",
            }
        )
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
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
                            self.prefix + "payments",
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
