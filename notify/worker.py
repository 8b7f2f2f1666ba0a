"""``wattpay notify``: notifications topic → texts → channels, at least once (SPEC S16).

Each event goes to the channels its type is routed to, concurrently (bounded per channel,
rate-limited per channel). Every attempt becomes a ``deliveries`` fact on the facts topic
(the loader writes it to ClickHouse); a final failure goes to the notification-failures
topic. An SMS reminder read in quiet hours is written to the notification-held topic and
delivered from there when the quiet hours end. The topic position of a partition advances
past an event only when all its channels have an outcome (or are held) and those records are
confirmed by the broker, so a crash re-sends only the events in flight, with the same
idempotency key (the event_id).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from billing.decoding import decode_json
from billing.outputs import Row
from bus.kafka import GroupReader, JsonProducer, KafkaException, Record, ensure_topics
from bus.topics import ACCOUNT_EVENTS, FACTS, FAILURES, NOTICES
from bus.topics import HELD as HELD_TOPIC
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
from notify.progress import Event, Stream
from notify.texts import TemplateError, locale_of, render
from store.facts import encode_fact

log = logging.getLogger(__name__)
HELD_PARTITIONS = 4  # when the worker creates the held topic itself (``up`` creates it first)


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
        max_held: int = 1024,
    ) -> None:
        self.settings = settings
        self.notify = settings.notify
        self.config = dict(config)
        self.channels = dict(channels) if channels is not None else build_channels(settings)
        self.metrics = metrics or create_notify_metrics()
        self.group = group
        self.clock = clock
        self.max_in_flight = max_in_flight
        # Notifications in flight, and held reminders waiting in memory (the rest of the
        # night's wait on their topic, so memory is bounded whatever the night's volume).
        self.notices = Stream("notifications", max_in_flight)
        self.held = Stream("held", max_held)
        self.policy = RetryPolicy(
            self.notify.max_attempts, self.notify.backoff_seconds, self.notify.backoff_max_seconds
        )
        self.limits = {name: RateLimit(self.notify.rate_per_second) for name in self.channels}
        self.events_done = 0
        self._lock = threading.Lock()
        self._finished: list[Event] = []
        # Held reminders due later: (due, sequence, event, (event_id, channel), submit).
        self._waiting: list[tuple[float, int, Event, tuple[str, str], Callable[[], None]]] = []
        self._sequence = 0

    def run(self, stop: threading.Event) -> None:
        """Consume, deliver and commit until ``stop``; in-flight events stay uncommitted."""
        held_topic = self.settings.topic(HELD_TOPIC.name)
        ensure_topics(self.config, [self.settings.topic(FAILURES.name)], 1)
        ensure_topics(self.config, [held_topic], HELD_PARTITIONS)
        # One consumer group: workers share the partitions, and take over a dead one's.
        for stream, topic, group in (
            (self.notices, self.settings.topic(NOTICES.name), self.group),
            (self.held, held_topic, f"{self.group}-held"),
        ):
            stream.reader = GroupReader(
                self.config, topic, group, on_revoke=partial(self._revoked, stream)
            )
        directory = AccountDirectory(self.config, self.settings.topic(ACCOUNT_EVENTS.name))
        self.directory = directory
        self.reported = ReportedFailures(self.config, self.settings.topic(FAILURES.name))
        self.producer = JsonProducer(self.config)
        pools = {
            name: ThreadPoolExecutor(self.notify.concurrency, thread_name_prefix=f"notify-{name}")
            for name in self.channels
        }
        self._stop = stop
        try:
            while not stop.is_set():
                directory.follow()
                self.reported.follow()
                self._release_held(pools)
                for stream, dispatch in (
                    (self.notices, self._dispatch),
                    (self.held, self._dispatch_held),
                ):
                    room = stream.room
                    assert stream.reader is not None
                    records = stream.reader.poll(min(room, 500), 0.05) if room > 0 else []
                    for record in records:
                        stream.positions.start(record.partition, record.offset)
                        stream.in_flight += 1
                        dispatch(record, pools)
                if self.notices.room <= 0 and self.held.room <= 0:
                    stop.wait(0.01)
                self._commit()
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            self._commit()
            self._closing = True
            for stream in (self.notices, self.held):
                if stream.reader is not None:
                    stream.reader.close()
            directory.close()
            self.reported.close()
            self.producer.close()

    def _dispatch(self, record: Record, pools: Mapping[str, ThreadPoolExecutor]) -> None:
        received = time.monotonic()
        try:
            notification = _decoded(record)
            if not isinstance(notification, dict):
                raise TemplateError("not a JSON object")
            event_id = notification.get("event_id") or f"offset:{record.partition}:{record.offset}"
            message = self._outgoing(notification, str(event_id))
        except (ValueError, TemplateError) as err:
            self._unrenderable(record, str(err))
            return
        kind = message.kind
        channels = [c for c in self.notify.channels_for(kind) if c in self.channels]
        now = self.clock()
        zone = self.settings.rules.zone
        releases = {name: quiet_release(kind, name, now, self.notify, zone) for name in channels}
        sending = [name for name in channels if releases[name] is None]
        event = Event(record, received, len(sending), self.notices)
        for name, release in releases.items():
            if release is not None:  # on the held topic, confirmed before this event commits
                self._hold(message, name, release, record.key)
        if not sending:
            self._finish(event)
        for name in sending:
            pools[name].submit(self._task(event, self.channels[name], message))

    def _outgoing(self, notification: dict[str, Any], event_id: str) -> Outgoing:
        """The texts of a notification, and where they go; raises when it cannot be rendered."""
        zh = locale_of(notification.get("locale")) == "zh-CN"
        signature = self.notify.signature if zh else self.notify.signature_en
        rendered = render(notification, signature, self.settings.rules.zone)
        account = str(notification.get("account_id", ""))
        return Outgoing(
            event_id=event_id,
            kind=str(notification.get("type")),
            account_id=account,
            locale=rendered.locale,
            subject=rendered.subject,
            text=rendered.text,
            segments=rendered.size.segments,
            phone=notification.get("phone") or None,
            email=self.directory.email(account),
            notification=notification,
        )

    def _hold(self, message: Outgoing, channel: str, release: datetime, key: str | None) -> None:
        """A reminder for quiet hours: a ``held`` row, and the reminder on the held topic."""
        self._record(self._attempt(message, channel, 0, HELD, f"quiet hours until {release:%H:%M}"))
        self.metrics.held.labels(channel, message.kind).inc()
        entry = {
            "event_id": message.event_id,
            "channel": channel,
            "release_at": release.isoformat(),
            "notification": message.notification,
        }
        self._send(HELD_TOPIC.name, key, entry)

    def _dispatch_held(self, record: Record, pools: Mapping[str, ThreadPoolExecutor]) -> None:
        """A held reminder: delivered on its channel when its quiet hours end."""
        try:
            entry = _decoded(record)
            channel = str(entry["channel"])
            release = datetime.fromisoformat(str(entry["release_at"]))
            notification = entry["notification"]
            if not isinstance(notification, dict) or release.tzinfo is None:
                raise TemplateError("not a held reminder")
            message = self._outgoing(notification, str(entry["event_id"]))
        except (ValueError, KeyError, TypeError, TemplateError) as err:
            self._unrenderable(record, str(err), self.held)
            return
        event = Event(record, time.monotonic(), 1, self.held)
        identity = (message.event_id, channel)
        with self._lock:
            repeated = any(w[3] == identity for w in self._waiting)
        if channel not in self.channels or repeated:  # a copy of one already waiting
            self._finish(event)
            return
        task = self._task(event, self.channels[channel], message)
        wait = (release - self.clock()).total_seconds()
        with self._lock:
            self._sequence += 1
            heapq.heappush(
                self._waiting,
                (
                    time.monotonic() + wait,
                    self._sequence,
                    event,
                    identity,
                    lambda: pools[channel].submit(task),
                ),
            )

    def _release_held(self, pools: Mapping[str, ThreadPoolExecutor]) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            while self._waiting and self._waiting[0][0] <= now:
                due.append(heapq.heappop(self._waiting)[4])
        for submit in due:
            submit()

    def _revoked(self, stream: Stream, partitions: list[int]) -> None:
        """Partitions going to another worker: record what finished, drop what waits on them.

        Held reminders waiting on them are dropped, uncommitted: the new owner reads them
        again and waits itself. Deliveries under way finish here; at most those (the events
        in flight) are delivered again by the new owner.
        """
        gone = set(partitions)
        with self._lock:
            mine = [w for w in self._waiting if w[2].stream is stream]
            dropped = [w for w in mine if w[2].record.partition in gone]
            self._waiting = [w for w in self._waiting if w not in dropped]
            heapq.heapify(self._waiting)
            for _, _, event, _, _ in dropped:
                event.interrupted = True
                event.waiting -= 1
                if event.waiting == 0:
                    self._finished.append(event)
        if not getattr(self, "_closing", False):
            try:
                self._commit()
            except KafkaException as err:  # the next owner redoes what was not committed
                log.warning("committing before a rebalance failed: %s", err)
        stream.positions.forget(gone)

    def _task(self, event: Event, channel: Channel, message: Outgoing) -> Callable[[], None]:
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

    def _observe(self, event: Event, channel: str, message: Outgoing, outcome: Outcome) -> None:
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

    def _finish(self, event: Event) -> None:
        with self._lock:
            self._finished.append(event)

    def _unrenderable(self, record: Record, error: str, stream: Stream | None = None) -> None:
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
        self._finish(Event(record, time.monotonic(), 0, stream or self.notices))

    def _commit(self) -> None:
        """Publish the outcomes of finished events, confirm them, then commit each stream."""
        with self._lock:
            finished, self._finished = self._finished, []
        if not finished:
            return
        for event in finished:
            for failure in event.failures:
                if self.reported.first(failure_id(failure)):
                    self._send(FAILURES.name, failure["account_id"], failure)
        self.producer.flush()
        for event in finished:
            event.stream.in_flight -= 1
            if not event.interrupted:
                event.stream.positions.finish(event.record.partition, event.record.offset)
        for stream in (self.notices, self.held):
            ready = stream.positions.committable()
            if ready and stream.reader is not None:
                stream.reader.commit(ready)
                stream.positions.committed.update(ready)
        self.events_done += sum(not e.interrupted for e in finished)

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


def _decoded(record: Record) -> Any:  # noqa: ANN401 - any JSON value
    """A record's JSON value; raises ``ValueError`` for bytes no decoder should take.

    Bytes that are not UTF-8, nesting too deep for the parser, duplicate keys and lone
    surrogates are refused here instead of raising out of the worker.
    """
    value, problem = decode_json(record.value.decode("utf-8"))
    if problem:
        raise ValueError(problem)
    return value
