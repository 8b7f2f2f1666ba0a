"""The duplicate memory (billing-rules #6): exact answers for the newest readings, small state."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from billing.clock import epoch_us
from billing.reading_log import BLOCK, ReadingLog

START = datetime(2026, 1, 1, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def _series(count: int, seed: int) -> list[tuple[int, int]]:
    """Mostly quarter-hour readings, with irregular gaps, rollovers and big jumps mixed in."""
    rnd = random.Random(seed)
    ts, milli, out = START, 5_000, []
    for _ in range(count):
        regular = rnd.random() < 0.9
        ts += QUARTER if regular else timedelta(microseconds=rnd.randint(1, 10**10))
        milli = milli + rnd.randint(0, 3_000) if rnd.random() < 0.95 else rnd.randint(0, 10**9)
        out.append((epoch_us(ts), milli))
    return out


@pytest.mark.parametrize("limit", [1, 63, 64, 65, 960])
def test_every_kept_reading_is_found_with_its_register(limit: int) -> None:
    series = _series(2_500, seed=limit)
    log = ReadingLog(limit)
    for ts, milli in series:
        assert log.energy_at(ts) is None  # not accepted yet
        log.add(ts, milli)
        assert log.energy_at(ts) == milli
        assert log.energy_at(ts - 1) in (None, *[m for _, m in series])
    assert limit <= log.count < limit + 2 * BLOCK
    for index, (ts, milli) in enumerate(series):
        found = log.energy_at(ts)
        if index >= len(series) - limit:
            assert found == milli
        else:
            assert found in (None, milli)  # older than the memory: at most still kept
        assert log.energy_at(ts + 1) is None


def test_a_day_of_quarter_hours_costs_about_two_bytes_a_reading() -> None:
    log = ReadingLog(960)
    ts, milli = START, 1_000_000
    for step in range(96 * 30):
        ts += QUARTER
        milli += 100 + step % 400
        log.add(epoch_us(ts), milli)
    assert 960 <= log.count < 960 + 2 * BLOCK
    assert len(log.data) < 2.2 * log.count
    assert len(pickle.dumps(log, protocol=pickle.HIGHEST_PROTOCOL)) < 4_000
