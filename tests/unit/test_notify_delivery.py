"""Pure parts of delivery: backoff with jitter, Retry-After, the commit watermark."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

from notify.channels import retry_after_seconds
from notify.delivery import RetryPolicy
from notify.progress import Positions


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=0.5, max_seconds=4.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (7, 4.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
        assert len(set(delays)) > 100  # jittered, not a fixed schedule
    assert policy.delay(1, 7.0, rng) == 7.0  # Retry-After wins over the backoff
    assert policy.delay(1, 10_000.0, rng) == 300.0  # within reason


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 3, 1, 8, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp()) == 30.0


def test_the_position_stops_before_the_oldest_event_in_flight() -> None:
    positions = Positions()
    for offset in range(5):
        positions.start(0, offset)
    positions.start(1, 7)
    assert positions.committable() == {0: 0, 1: 7}
    positions.finish(0, 1)
    positions.finish(0, 2)
    assert positions.committable() == {0: 0, 1: 7}  # offset 0 still in flight
    positions.finish(0, 0)
    positions.finish(1, 7)
    assert positions.committable() == {0: 3, 1: 8}
    positions.committed.update({0: 3, 1: 8})
    assert positions.committable() == {}
    positions.finish(0, 4)
    assert positions.committable() == {}  # 3 is still in flight
    positions.finish(0, 3)
    assert positions.committable() == {0: 5}
