"""Delivery of one notification to one channel (SPEC S16.3, S16.4): attempts, backoff, holds.

Retries use exponential backoff with jitter, or the receiver's ``Retry-After`` when it sent
one, on timeouts, connection errors, 429 and 5xx; any other refusal is final. Every attempt
is reported to ``record`` (a ``deliveries`` row); a stop during a wait leaves the outcome
open, so the event stays uncommitted and is sent again, with the same key, after a restart.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from config.notify import NotifySettings
from notify.channels import Channel, Outgoing, SendFailed

DELIVERED = "delivered"
RETRYING = "retrying"
FAILED = "failed"
SKIPPED = "skipped"
HELD = "held"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Attempt:
    """One line of the ``deliveries`` table."""

    event_id: str
    kind: str
    account_id: str
    channel: str
    attempt: int
    status: str
    error: str
    segments: int
    ts: datetime


@dataclass(frozen=True)
class Outcome:
    """How delivering to one channel ended: delivered, failed, skipped or interrupted."""

    status: str
    attempts: int
    error: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts``; the n-th wait is a random 50–100 % of base × 2^(n−1), capped."""

    max_attempts: int = 6
    base_seconds: float = 0.5
    max_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, max(self.max_seconds, 300.0))
        ceiling = min(self.base_seconds * 2 ** (attempt - 1), self.max_seconds)
        return ceiling * rng.uniform(0.5, 1.0)


class RateLimit:
    """A token bucket: at most ``rate`` sends a second, bursts of up to ``rate`` (≥ 1)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> bool:
        """Take a token, waiting as needed; False if ``stop`` was set meanwhile."""
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return True
                wait = (1 - self.tokens) / self.rate
            if stop.wait(wait):
                return False


def quiet_release(
    kind: str, channel: str, now: datetime, settings: NotifySettings, zone: ZoneInfo
) -> datetime | None:
    """When a held SMS reminder may go (the next ``quiet_until``), or None to send now (S16.4)."""
    if not settings.quiet_hours or channel != "sms" or kind not in settings.quiet_types:
        return None
    local = now.astimezone(zone)
    start, end = settings.quiet_from, settings.quiet_until
    clock = local.timetz().replace(tzinfo=None)
    quiet = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not quiet:
        return None
    release = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    return release if release > local else release + timedelta(days=1)


def deliver(
    channel: Channel,
    message: Outgoing,
    policy: RetryPolicy,
    *,
    record: Callable[[Attempt], None],
    stop: threading.Event,
    limit: RateLimit | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    rng: random.Random | None = None,
) -> Outcome:
    """Send with retries, recording every attempt; the outcome once it is final."""
    rng = rng or random.Random()

    def row(attempt: int, status: str, error: str = "") -> None:
        record(
            Attempt(
                message.event_id,
                message.kind,
                message.account_id,
                channel.name,
                attempt,
                status,
                error,
                message.segments,
                clock(),
            )
        )

    missing = channel.missing_address(message)
    if missing is not None:
        row(0, SKIPPED, missing)
        return Outcome(SKIPPED, 0, missing)
    for attempt in range(1, policy.max_attempts + 1):
        if limit is not None and not limit.acquire(stop):
            return Outcome(INTERRUPTED, attempt - 1)
        try:
            channel.send(message)
        except SendFailed as failure:
            final = not failure.retryable or attempt == policy.max_attempts
            row(attempt, FAILED if final else RETRYING, failure.error)
            if final:
                return Outcome(FAILED, attempt, failure.error)
            if stop.wait(policy.delay(attempt, failure.retry_after, rng)):
                return Outcome(INTERRUPTED, attempt, failure.error)
            continue
        row(attempt, DELIVERED)
        return Outcome(DELIVERED, attempt)
    raise AssertionError("unreachable: the last attempt is final")
