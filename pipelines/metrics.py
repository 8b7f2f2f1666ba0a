"""Prometheus metrics (SPEC S12), from one factory that takes a registry.

Label values are bounded: topics, reasons, kinds, types, statuses and table names, never an
account or meter id. Seconds, not milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from billing.numbers import ZERO, to_milli
from billing.outputs import (
    METER_COMMANDS,
    NOTIFICATIONS,
    PAYMENT_REQUESTS,
    SCALED_COLUMNS,
    Output,
    Row,
    ScaledRow,
    TopicMessage,
)
from billing.state import ACTIVE, ARREARS, CLOSED, DISCONNECTED

STATUSES = (ACTIVE, ARREARS, DISCONNECTED, CLOSED)
_INTERVAL_KWH = [name for name, _ in SCALED_COLUMNS["intervals"]].index("kwh")
"""Where an ``intervals`` row's kWh (0.001 kWh) is among its scaled values."""


@dataclass(frozen=True)
class Metrics:
    """Every wattpay metric, registered on one registry."""

    registry: CollectorRegistry
    messages_in: Counter
    messages_applied: Counter
    messages_rejected: Counter
    kwh_rated: Counter
    yuan_charged: Counter
    yuan_credited: Counter
    notifications: Counter
    commands: Counter
    payment_requests: Counter
    accounts: Gauge
    event_time_lag: Gauge
    input_lag: Gauge
    clickhouse_insert_seconds: Histogram
    clickhouse_batch_rows: Histogram
    step_items: Counter
    retention_removed: Counter
    _children: dict[tuple[str, tuple[str, ...]], Any] = field(
        default_factory=dict, repr=False, compare=False
    )

    def of(self, metric: Counter | Gauge, *labels: str) -> Any:  # noqa: ANN401 - a child
        """``metric.labels(*labels)``, looked up once: ``labels`` takes a lock on every call.

        Label values are bounded (topics, reasons, kinds), so the cache is too.
        """
        key = (metric._name, labels)  # noqa: SLF001 - the metric's own name
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_outputs(self, outputs: Iterable[Output]) -> None:
        """Count what processed messages produced: summed first, one increment per series.

        Every ``inc`` takes the metric's lock, so a batch's outputs are tallied in plain ints
        and counted once each (energy in 0.001 kWh, money exact until the increment).
        """
        count = 0
        milli = 0
        charged = ZERO
        credits: dict[str, Decimal] = {}
        events: dict[tuple[Counter, str], int] = {}
        for output in outputs:
            count += 1
            if type(output) is ScaledRow:
                if output.table == "intervals":
                    milli += output.scaled[_INTERVAL_KWH]
            elif isinstance(output, Row):
                table, values = output.table, output.values
                if table == "intervals":
                    milli += to_milli(values["kwh"])
                elif table == "ledger":
                    amount: Decimal = values["amount"]
                    if values["kind"] == "charge":
                        charged -= amount
                    elif amount > 0:
                        kind = str(values["kind"])
                        credits[kind] = credits.get(kind, ZERO) + amount
            elif isinstance(output, TopicMessage):
                if output.topic == NOTIFICATIONS:
                    key = (self.notifications, str(output.value.get("type", "")))
                elif output.topic == METER_COMMANDS:
                    key = (self.commands, str(output.value.get("action", "")))
                elif output.topic == PAYMENT_REQUESTS:
                    key = (self.payment_requests, "")
                else:
                    continue
                events[key] = events.get(key, 0) + 1
        self.of(self.step_items, "outputs").inc(count)
        if milli:
            self.kwh_rated.inc(milli / 1000)  # kWh: a counter, not money
        if charged:
            self.yuan_charged.inc(float(charged))
        for kind, credited in credits.items():
            self.of(self.yuan_credited, kind).inc(float(credited))
        for (metric, label), number in events.items():
            (metric if metric is self.payment_requests else self.of(metric, label)).inc(number)

    def status_changed(self, old: str | None, new: str | None) -> None:
        """Move one account between status gauges."""
        if old == new:
            return
        if old is not None:
            self.of(self.accounts, old).dec()
        if new is not None:
            self.of(self.accounts, new).inc()

    def observe_event_time(self, ts: datetime, now: datetime) -> None:
        """Lag between the latest processed event and the wall clock."""
        self.event_time_lag.set(max((now - ts).total_seconds(), 0.0))


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """All metrics on ``registry`` (a fresh one by default, so tests never collide)."""
    registry = registry or CollectorRegistry()
    metrics = Metrics(
        registry=registry,
        messages_in=Counter(
            "wattpay_messages_in", "Input messages received", ["topic"], registry=registry
        ),
        messages_applied=Counter(
            "wattpay_messages_applied", "Input messages applied", ["topic"], registry=registry
        ),
        messages_rejected=Counter(
            "wattpay_messages_rejected",
            "Input messages rejected",
            ["topic", "reason"],
            registry=registry,
        ),
        kwh_rated=Counter("wattpay_kwh_rated", "Energy rated (kWh)", registry=registry),
        yuan_charged=Counter(
            "wattpay_yuan_charged", "Daily charges posted (yuan)", registry=registry
        ),
        yuan_credited=Counter(
            "wattpay_yuan_credited", "Credits posted (yuan)", ["kind"], registry=registry
        ),
        notifications=Counter(
            "wattpay_notifications", "Notifications emitted", ["type"], registry=registry
        ),
        commands=Counter(
            "wattpay_meter_commands", "Meter commands emitted", ["action"], registry=registry
        ),
        payment_requests=Counter(
            "wattpay_payment_requests", "Auto top-up requests emitted", registry=registry
        ),
        accounts=Gauge(
            "wattpay_accounts", "Accounts by status (this process)", ["status"], registry=registry
        ),
        event_time_lag=Gauge(
            "wattpay_event_time_lag_seconds",
            "Wall clock minus the timestamp of the latest processed message",
            registry=registry,
        ),
        input_lag=Gauge(
            "wattpay_input_lag_messages",
            "Input messages not yet billed: behind the end of the latest fetch, plus buffered",
            ["topic"],
            registry=registry,
        ),
        clickhouse_insert_seconds=Histogram(
            "wattpay_clickhouse_insert_seconds",
            "Time to write one batch to ClickHouse",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        ),
        clickhouse_batch_rows=Histogram(
            "wattpay_clickhouse_batch_rows",
            "Rows in one ClickHouse batch",
            buckets=(1, 10, 100, 1000, 5000, 10000, 50000, 100000),
            registry=registry,
        ),
        step_items=Counter(
            "wattpay_step_items", "Items through a dataflow step", ["step"], registry=registry
        ),
        retention_removed=Counter(
            "wattpay_retention_batches_removed",
            "Stored batches the retention janitor removed from the embedded broker",
            ["topic"],
            registry=registry,
        ),
    )
    for status in STATUSES:
        metrics.accounts.labels(status).set(0)
    return metrics


class PollStatsCollector:
    """Exports a Modbus poller's counters (S13): polls, readings, failures by model and kind."""

    def __init__(self, stats: object) -> None:
        self.stats = stats

    def collect(self) -> Iterable[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.stats
        yield CounterMetricFamily("wattpay_meter_poll_rounds", "Poll rounds", value=stats.rounds)  # type: ignore[attr-defined]
        yield CounterMetricFamily("wattpay_meter_polls", "Meter polls attempted", value=stats.polls)  # type: ignore[attr-defined]
        yield CounterMetricFamily(
            "wattpay_meter_readings_published",
            "Readings published",
            value=stats.readings,  # type: ignore[attr-defined]
        )
        failures = CounterMetricFamily(
            "wattpay_meter_poll_failures",
            "Failed polls by meter model and error kind",
            labels=["model", "kind"],
        )
        for (model, kind), count in sorted(stats.failures.items()):  # type: ignore[attr-defined]
            failures.add_metric([model, kind], count)
        yield failures
        yield GaugeMetricFamily(
            "wattpay_meter_poll_round_seconds",
            "Duration of the last full poll round",
            value=stats.last_round_seconds,  # type: ignore[attr-defined]
        )


def serve_poll_metrics(stats: object, port: int, host: str = "127.0.0.1") -> CollectorRegistry:
    """Expose a poller's counters on ``host:port``; returns the registry."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(PollStatsCollector(stats))  # type: ignore[arg-type]
    start_http_server(port, addr=host, registry=registry)
    return registry
