"""``wattpay notify``: notifications topic → texts → channels, at least once (SPEC S16).

Each event goes to the channels its type is routed to, concurrently (bounded per channel,
rate-limited per channel). Every attempt becomes a ``deliveries`` fact on the facts topic
(the loader writes it to ClickHouse); a final failure goes to the notification-failures
topic. The topic position of a partition advances past an event only when all its channels
have an outcome and those records are confirmed by the broker, so a crash re-sends only the
events in flight, with the same idempotency key (the event_id).
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from billing.outputs import Row
from bus.kafka import GroupReader, JsonProducer, KafkaException, Record, ensure_topics
from bus.topics import ACCOUNT_EVENTS, FACTS, FAILURES, NOTICES
from config.settings import Settings
from notify.channels import (
    Channel,
    EmailChannel,
    LogChannel,
    Outgoing,
    SmsChannel,
    WebhookChannel,
)
from notify.delivery import (
    DELIVERED,
    FAILED,
    HELD,
    INTERRUPTED,
    RETRYING,
    SKIPPED,
    Attempt,
    Outcome,
    RateLimit,
    RetryPolicy,
    deliver,
    quiet_release,
)
from notify.directory import AccountDirectory, ReportedFailures, failure_id
from notify.metrics import NotifyMetrics, create_notify_metrics
from notify.texts import TemplateError, locale_of, render
from store.facts import encode_fact

log = logging.getLogger(__name__)


def build_channels(settings: Settings, log_file: Path | None = None) -> dict[str, Channel]:
    """The channels the routes use, built from the ``[notify]`` settings."""
    notify = settings.notify
    used = {c for channels in notify.routes.values() for c in channels}
    factories: dict[str, Callable[[], Channel]] = {
        "sms": lambda: SmsChannel(notify.sms),
        "email": lambda: EmailChannel(notify.email),
        "webhook": lambda: WebhookChannel(notify.webhook),
        "log": lambda: LogChannel(log_file or (Path(notify.log_file) if notify.log_file else None)),
    }
    return {name: factories[name]() for name in sorted(used)}


@dataclass
class _Event:
    record: Record
    received: float
    waiting: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


class _Positions:
    """Per partition, the offsets in flight; what may be committed is below the oldest."""

    def __init__(self) -> None:
        self.pending: dict[int, set[int]] = {}
        self.next: dict[int, int] = {}
        self.committed: dict[int, int] = {}

    def start(self, partition: int, offset: int) -> None:
        self.pending.setdefault(partition, set()).add(offset)
        self.next[partition] = max(self.next.get(partition, 0), offset + 1)

    def finish(self, partition: int, offset: int) -> None:
        if partition in self.pending:  # not if the partition went to another worker
            self.pending[partition].discard(offset)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions now another worker's: their progress is its to record."""
        for partition in partitions:
            for table in (self.pending, self.next, self.committed):
                table.pop(partition, None)

    def committable(self) -> dict[int, int]:
        ready = {}
        for partition, upto in self.next.items():
            pending = self.pending.get(partition)
            position = min(pending) if pending else upto
            if position > self.committed.get(partition, -1):
                ready[partition] = position
        return ready


class NotifyWorker:
    """The notification worker; ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        config: Mapping[str, str],
        *,
        channels: Mapping[str, Channel] | None = None,
        metrics: NotifyMetrics | None = None,
        group: str = "wattpay-notify",
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        max_in_flight: int = 256,
    ) -> None:
        self.settings = settings
        self.notify = settings.notify
        self.config = dict(config)
        self.channels = dict(channels) if channels is not None else build_channels(settings)
        self.metrics = metrics or create_notify_metrics()
        self.group = group
        self.clock = clock
        self.max_in_flight = max_in_flight
        self.policy = RetryPolicy(
            self.notify.max_attempts, self.notify.backoff_seconds, self.notify.backoff_max_seconds
        )
        self.limits = {name: RateLimit(self.notify.rate_per_second) for name in self.channels}
        self.events_done = 0
        self._lock = threading.Lock()
        self._finished: list[_Event] = []
        # Reminders held for quiet hours: (due, sequence, event, channel, submit).
        self._held: list[tuple[float, int, _Event, str, Callable[[], None]]] = []
        self._sequence = 0
        self._dropped = 0  # events finished by a rebalance's commit, not yet counted

    def run(self, stop: threading.Event) -> None:
        """Consume, deliver and commit until ``stop``; in-flight events stay uncommitted."""
        topic = self.settings.topic(NOTICES.name)
        ensure_topics(self.config, [self.settings.topic(FAILURES.name)], 1)
        # One consumer group: workers share the partitions, and take over a dead one's.
        reader = GroupReader(self.config, topic, self.group, on_revoke=self._revoked)
        directory = AccountDirectory(self.config, self.settings.topic(ACCOUNT_EVENTS.name))
        self.directory = directory
        self.reported = ReportedFailures(self.config, self.settings.topic(FAILURES.name))
        self.producer = JsonProducer(self.config)
        pools = {
            name: ThreadPoolExecutor(self.notify.concurrency, thread_name_prefix=f"notify-{name}")
            for name in self.channels
        }
        positions = _Positions()
        self._reader, self._positions = reader, positions
        in_flight = 0
        self._stop = stop
        try:
            while not stop.is_set():
                directory.follow()
                self.reported.follow()
                self._release_held(pools)
                # SMS reminders held for quiet hours do not take room: urgent ones still flow.
                room = self.max_in_flight - in_flight + len(self._held)
                records = reader.poll(min(room, 500), 0.1) if room > 0 else []
                if room <= 0:
                    stop.wait(0.01)
                for record in records:
                    positions.start(record.partition, record.offset)
                    in_flight += 1
                    self._dispatch(record, pools)
                in_flight -= self._commit(reader, positions) + self._dropped
                self._dropped = 0
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            self._commit(reader, positions)
            self._closing = True
            reader.close()
            directory.close()
            self.reported.close()
            self.producer.close()

    def _dispatch(self, record: Record, pools: Mapping[str, ThreadPoolExecutor]) -> None:
        received = time.monotonic()
        try:
            notification = json.loads(record.value)
            if not isinstance(notification, dict):
                raise TemplateError("not a JSON object")
            kind = str(notification.get("type"))
            zh = locale_of(notification.get("locale")) == "zh-CN"
            signature = self.notify.signature if zh else self.notify.signature_en
            rendered = render(notification, signature, self.settings.rules.zone)
        except (ValueError, TemplateError) as err:
            self._unrenderable(record, str(err))
            return
        account = str(notification.get("account_id", ""))
        message = Outgoing(
            event_id=str(
                notification.get("event_id") or f"offset:{record.partition}:{record.offset}"
            ),
            kind=kind,
            account_id=account,
            locale=rendered.locale,
            subject=rendered.subject,
            text=rendered.text,
            segments=rendered.size.segments,
            phone=notification.get("phone") or None,
            email=self.directory.email(account),
            notification=notification,
        )
        channels = [c for c in self.notify.channels_for(kind) if c in self.channels]
        event = _Event(record, received, len(channels))
        if not channels:
            self._finish(event)
        for name in channels:
            task = self._task(event, self.channels[name], message)
            release = quiet_release(kind, name, self.clock(), self.notify, self.settings.rules.zone)
            if release is None:
                pools[name].submit(task)
                continue
            self._record(
                self._attempt(message, name, 0, HELD, f"quiet hours until {release:%H:%M}")
            )
            self.metrics.held.labels(name, kind).inc()
            wait = (release - self.clock()).total_seconds()
            with self._lock:
                self._sequence += 1
                heapq.heappush(
                    self._held,
                    (
                        time.monotonic() + wait,
                        self._sequence,
                        event,
                        name,
                        lambda n=name, t=task: pools[n].submit(t),
                    ),
                )

    def _release_held(self, pools: Mapping[str, ThreadPoolExecutor]) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            while self._held and self._held[0][0] <= now:
                due.append(heapq.heappop(self._held)[4])
        for submit in due:
            submit()

    def _revoked(self, partitions: list[int]) -> None:
        """Partitions going to another worker: record what finished, drop what waits on them.

        Reminders held for quiet hours on them are dropped, uncommitted: the new owner reads
        them again and holds them itself. Deliveries under way finish here; at most those
        (the events in flight) are delivered again by the new owner.
        """
        gone = set(partitions)
        with self._lock:
            kept = [h for h in self._held if h[2].record.partition not in gone]
            dropped = [h for h in self._held if h[2].record.partition in gone]
            self._held = kept
            heapq.heapify(self._held)
        for _, _, event, _, _ in dropped:
            event.interrupted = True
            with self._lock:
                event.waiting -= 1
                if event.waiting == 0:
                    self._finished.append(event)
        if not getattr(self, "_closing", False):
            try:
                self._dropped += self._commit(self._reader, self._positions)
            except KafkaException as err:  # the next owner redoes what was not committed
                log.warning("committing before a rebalance failed: %s", err)
        self._positions.forget(gone)

    def _task(self, event: _Event, channel: Channel, message: Outgoing) -> Callable[[], None]:
        def run() -> None:
            try:
                outcome = deliver(
                    channel,
                    message,
                    self.policy,
                    record=self._record,
                    stop=self._stop,
                    limit=self.limits[channel.name],
                    clock=self.clock,
                )
            except Exception as err:  # a channel bug must not wedge the partition
                log.exception("channel %s failed unexpectedly", channel.name)
                outcome = Outcome(FAILED, 0, f"internal error: {type(err).__name__}")
            self._observe(event, channel.name, message, outcome)

        return run

    def _observe(self, event: _Event, channel: str, message: Outgoing, outcome: Outcome) -> None:
        labels = (channel, message.kind)
        if outcome.status == DELIVERED:
            self.metrics.delivered.labels(*labels).inc()
            self.metrics.latency.labels(channel).observe(time.monotonic() - event.received)
            if channel == "sms":
                self.metrics.sms_segments.labels(message.locale).inc(message.segments)
        elif outcome.status == SKIPPED:
            self.metrics.skipped.labels(*labels).inc()
        elif outcome.status == FAILED:
            self.metrics.failed.labels(*labels).inc()
            event.failures.append(
                {
                    "event_id": message.event_id,
                    "type": message.kind,
                    "account_id": message.account_id,
                    "channel": channel,
                    "attempts": outcome.attempts,
                    "error": outcome.error,
                    "failed_at": self.clock().isoformat(),
                    "notification": message.notification,
                }
            )
        if outcome.status == INTERRUPTED:
            event.interrupted = True
        with self._lock:
            event.waiting -= 1
            if event.waiting == 0:
                self._finished.append(event)

    def _finish(self, event: _Event) -> None:
        with self._lock:
            self._finished.append(event)

    def _unrenderable(self, record: Record, error: str) -> None:
        log.error(
            "notification at %s@%s cannot be rendered: %s", record.partition, record.offset, error
        )
        report = {
            "event_id": None,
            "channel": None,
            "error": f"unrenderable: {error}",
            "partition": record.partition,
            "offset": record.offset,
            "payload": record.value.decode("utf-8", "replace"),
        }
        if self.reported.first(failure_id(report)):
            self._send(FAILURES.name, record.key, report)
        self._finish(_Event(record, time.monotonic(), 0))

    def _commit(self, reader: GroupReader, positions: _Positions) -> int:
        """Publish the outcomes of finished events, confirm them, then commit. Events done."""
        with self._lock:
            finished, self._finished = self._finished, []
        if not finished:
            return 0
        for event in finished:
            for failure in event.failures:
                if self.reported.first(failure_id(failure)):
                    self._send(FAILURES.name, failure["account_id"], failure)
        self.producer.flush()
        for event in finished:
            if not event.interrupted:
                positions.finish(event.record.partition, event.record.offset)
        ready = positions.committable()
        reader.commit(ready)
        positions.committed.update(ready)
        self.events_done += sum(not e.interrupted for e in finished)
        return len(finished)

    def _attempt(
        self, message: Outgoing, channel: str, number: int, status: str, error: str
    ) -> Attempt:
        return Attempt(
            message.event_id,
            message.kind,
            message.account_id,
            channel,
            number,
            status,
            error,
            message.segments,
            self.clock(),
        )

    def _record(self, attempt: Attempt) -> None:
        if attempt.status == RETRYING:
            self.metrics.retried.labels(attempt.channel, attempt.kind).inc()
        stamp = attempt.ts.isoformat(timespec="microseconds")
        values = {
            "delivery_id": f"{attempt.event_id}|{attempt.channel}|{attempt.attempt}|{stamp}",
            "event_id": attempt.event_id,
            "type": attempt.kind,
            "account_id": attempt.account_id,
            "channel": attempt.channel,
            "attempt": attempt.attempt,
            "status": attempt.status,
            "error": attempt.error,
            "segments": min(attempt.segments, 255),
            "ts": attempt.ts,
        }
        key, payload = encode_fact(Row("deliveries", values))
        with self._lock:
            self.producer.send_encoded(self.settings.topic(FACTS.name), key, payload)

    def _send(self, logical: str, key: str | None, value: Mapping[str, Any]) -> None:
        with self._lock:
            self.producer.send(self.settings.topic(logical), key, value)
