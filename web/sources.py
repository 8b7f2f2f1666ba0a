"""Live figures that are not in ClickHouse: Prometheus metrics (S12) and relay outcomes (S13).

The metrics come from the running processes' endpoints, the outcomes from
``meter-command-results``.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)
SCRAPE_TIMEOUT = 2.0
OUTCOMES_KEPT = 2000

# Metric families summed over their labels (counts of messages; lag is a gauge).
TOTALS = {
    "wattpay_messages_in": "messages_in",
    "wattpay_messages_applied": "messages_applied",
    "wattpay_messages_rejected": "messages_rejected",
    "wattpay_event_time_lag_seconds": "lag_seconds",
    "wattpay_input_lag_messages": "input_lag",
    "wattpay_meter_polls": "meter_polls",
}


def parse_metrics(text: str) -> dict[str, float]:
    """Totals of the dashboard's metric families in one Prometheus text exposition."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = TOTALS.get(family.name) or TOTALS.get(family.name.removesuffix("_total"))
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals


def scrape(urls: Sequence[str]) -> dict[str, Any]:
    """Sum the dashboard's figures over the configured endpoints that answer."""
    totals: dict[str, float] = {}
    answered = 0
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:  # noqa: S310
                text = response.read().decode("utf-8")
        except OSError:
            continue
        answered += 1
        for name, value in parse_metrics(text).items():
            totals[name] = (
                max(totals.get(name, 0.0), value)
                if name == "lag_seconds"
                else (totals.get(name, 0.0) + value)
            )
    return {"endpoints": len(urls), "answered": answered, **totals}


class CommandOutcomes:
    """Keeps the latest relay outcomes by ``command_id``, read from Kafka in the background."""

    def __init__(self, config: Mapping[str, str] | None, topic: str, interval: float = 3.0):
        self.config = dict(config) if config else None
        self.topic = topic
        self.interval = interval
        self._seen: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._group = f"wattpay-web-{threading.get_ident()}-{id(self)}"

    def start(self, stop: threading.Event) -> threading.Thread | None:
        """Follow the topic until ``stop`` is set (nothing when no brokers are configured)."""
        if self.config is None:
            return None
        thread = threading.Thread(target=self._run, args=(stop,), name="web-outcomes", daemon=True)
        thread.start()
        return thread

    def _run(self, stop: threading.Event) -> None:
        from bus.kafka import consume_json

        while not stop.is_set():
            try:
                pairs = consume_json(self.config or {}, self.topic, group=self._group, timeout=10)
            except (TimeoutError, ValueError, RuntimeError) as err:
                log.debug("command outcomes: %s", err)
                pairs = []
            except Exception as err:  # noqa: BLE001 - a broker hiccup must not end the thread
                log.debug("command outcomes: %s", err)
                pairs = []
            self.add(value for _, value in pairs)
            stop.wait(self.interval)

    def add(self, values: Any) -> None:
        """Record outcomes (the latest per command wins; the oldest are forgotten first)."""
        with self._lock:
            for value in values:
                if isinstance(value, dict) and isinstance(value.get("command_id"), str):
                    self._seen[value["command_id"]] = value
                    self._seen.move_to_end(value["command_id"])
            while len(self._seen) > OUTCOMES_KEPT:
                self._seen.popitem(last=False)

    @property
    def following(self) -> bool:
        """True when a broker is configured: the relay results topic is read."""
        return self.config is not None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The outcomes known now."""
        with self._lock:
            return dict(self._seen)
