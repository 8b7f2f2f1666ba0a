"""A reader's partition ends: the broker's word, or silence (an offset gap never reports one)."""

from __future__ import annotations

from bus.kafka import PartitionEnds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_reported_end_holds_until_the_next_record() -> None:
    clock = Clock()
    ends = PartitionEnds([0, 1], quiet=2.0, clock=clock)
    assert not ends.at_end(0) and not ends.all_at_end
    ends.end(0)
    ends.end(1)
    assert ends.all_at_end
    ends.record(1)  # more arrived after the end was reported
    assert ends.at_end(0) and not ends.at_end(1) and not ends.all_at_end
    ends.end(1)
    assert ends.all_at_end


def test_a_partition_that_sends_nothing_is_at_its_end_after_the_quiet_time() -> None:
    clock = Clock()
    ends = PartitionEnds([0, 1], quiet=2.0, clock=clock)
    ends.end(0)
    clock.now += 1.9
    assert not ends.at_end(1) and not ends.silent(1)
    clock.now += 0.1  # partition 1 sits in a gap: neither records nor an end for 2 s
    assert ends.at_end(1) and ends.silent(1) and ends.all_at_end
    assert not ends.silent(0)  # the broker's word, not silence
    ends.record(1)
    assert not ends.at_end(1)
    clock.now += 2.0
    assert ends.at_end(1)


def test_restart_asks_for_a_fresh_end_or_fresh_silence() -> None:
    clock = Clock()
    ends = PartitionEnds(["t:0"], quiet=2.0, clock=clock)
    ends.end("t:0")
    ends.restart()
    assert not ends.at_end("t:0")
    clock.now += 2.0
    assert ends.at_end("t:0")
    assert ends.keys == ["t:0"]


def test_a_partition_never_heard_from_waits_the_first_quiet_time() -> None:
    """A merging reader must not take a broker slow to serve a backlog for an end."""
    clock = Clock()
    ends = PartitionEnds([0, 1], quiet=2.0, first_quiet=30.0, clock=clock)
    ends.record(0)
    clock.now += 29.9
    assert ends.silent(0) and ends.at_end(0)  # answered once: the ordinary quiet time
    assert not ends.silent(1) and not ends.at_end(1) and not ends.all_at_end
    clock.now += 0.1
    assert ends.silent(1) and ends.all_at_end
    ends.end(1)
    ends.restart()  # a partition that answered keeps the ordinary quiet time
    clock.now += 2.0
    assert ends.silent(1) and ends.at_end(1)


def test_without_a_first_quiet_time_every_partition_has_the_same() -> None:
    clock = Clock()
    ends = PartitionEnds([0], quiet=2.0, clock=clock)
    clock.now += 2.0
    assert ends.first_quiet == 2.0 and ends.silent(0)
