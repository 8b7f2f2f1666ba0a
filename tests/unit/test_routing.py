"""The routing steps: numbered input, placeholders held for the lifecycle, order restored."""

import json
import pickle
import zlib
from datetime import datetime

from bytewax.testing import TestingSource

from billing.clock import LOCAL_ZONE
from billing.messages import Envelope
from billing.rules import BillingRules
from pipelines.routing import (
    ANSWER,
    CLAIM,
    INPUT,
    LIFECYCLE_KEY,
    ORDER_KEYS,
    ROUTE_BUCKETS,
    ROUTE_KEYS,
    ROUTED,
    TICK,
    WAIT,
    ClaimLogic,
    LifecycleLogic,
    NumberedSource,
    OrderLogic,
    RouteLogic,
    bucket_of,
    claims_key,
    dispatch,
    route_key,
)
from pipelines.shelves import Shelved
from pipelines.wire import pack_envelope

ARRIVED = datetime(2026, 6, 1, 12, tzinfo=LOCAL_ZONE)


def envelope(topic: str, line: int, **payload: str) -> Envelope:
    return Envelope.decode(topic, f"{topic}:{line}", json.dumps(payload), ARRIVED)


OPEN = envelope(
    "accounts",
    1,
    type="open",
    account_id="A1",
    meter_id="M1",
    plan="zhejiang-tiered",
    ts="2026-06-01T00:00:00+08:00",
    opening_balance="100.00",
)
READING = envelope("readings", 1, meter_id="M1", ts="2026-06-01T00:15:00+08:00", energy_kwh="1.5")


def test_buckets_are_stable_across_processes_and_runs() -> None:
    # crc32, not Python's per-process salted hash: a restart must find its keys again.
    assert bucket_of("M0001", 1 << 32) == zlib.crc32(b"M0001")
    assert bucket_of("\ud800", 8) in range(8)  # a lone surrogate still has a bucket


def test_the_source_numbers_its_items_and_closes_each_batch_with_a_tick() -> None:
    items = [OPEN, READING, READING, READING, READING]
    source = NumberedSource(TestingSource(items, batch_size=2))
    part = source.build_part("input", "iterable", None)
    first, second = part.next_batch(), part.next_batch()
    assert first == [(0, OPEN), (1, READING), (1, None)]
    assert second == [(2, READING), (3, READING), (3, None)]
    resumed = source.build_part("input", "iterable", part.snapshot())
    assert resumed.next_batch() == [(4, READING), (4, None)]


def test_readings_go_to_their_meter_bucket_and_other_messages_to_the_lifecycle() -> None:
    assert dispatch(None, (7, READING)) == [(route_key("M1"), (INPUT, 7, pack_envelope(READING)))]
    to_lifecycle, *waits = dispatch(None, (3, OPEN))
    assert to_lifecycle == (LIFECYCLE_KEY, (INPUT, 3, pack_envelope(OPEN)))
    assert waits == [(key, (WAIT, 3)) for key in ROUTE_KEYS]
    ticks = dispatch(None, (9, None))
    assert ticks == [(key, (TICK, 9, bucket)) for bucket, key in enumerate(ROUTE_KEYS)]


def test_a_bucket_holds_what_follows_a_placeholder_until_the_lifecycle_answers() -> None:
    rules = BillingRules()
    bucket = RouteLogic(rules, None, None)
    lifecycle = LifecycleLogic(rules, None, None)
    # The reading (seq 1) reaches the meter's bucket before the lifecycle answered the open.
    held, _ = bucket.on_item((WAIT, 0))
    assert list(held) == []
    held, _ = bucket.on_item((INPUT, 1, pack_envelope(READING)))
    assert list(held) == []  # without the open it would be refused as unknown_meter
    answers, _ = lifecycle.on_item((INPUT, 0, pack_envelope(OPEN)))
    answer = dict(answers)[route_key("M1")]
    assert answer[0] == ANSWER
    released, _ = bucket.on_item(answer)
    keyed = [item for item in released if isinstance(item, tuple)]
    targets = [(key, value[0], value[1], value[2]) for key, value in keyed]
    if route_key("A1") == route_key("M1"):  # this bucket also forwards the open itself
        assert targets[0][1:] == (ROUTED, 0, "A1")
        targets = targets[1:]
    assert [t[1:] for t in targets] == [(ROUTED, 1, "A1")]
    # Restored from its snapshot, the bucket still knows the meter's owner.
    again = RouteLogic(rules, None, bucket.snapshot())
    routed, _ = again.on_item((INPUT, 2, pack_envelope(READING)))
    assert [value[2] for _, value in routed] == ["A1"]


def test_order_is_restored_below_the_smallest_tick_of_every_route_bucket() -> None:
    order = OrderLogic(None)
    assert list(order.on_item((ROUTED, 5, "A1", ("five",)))[0]) == []
    assert list(order.on_item((ROUTED, 2, "A2", ("two",)))[0]) == []
    for bucket in range(ROUTE_BUCKETS - 1):
        assert list(order.on_item((TICK, bucket, 6))[0]) == []  # one bucket still behind
    released, _ = order.on_item((TICK, ROUTE_BUCKETS - 1, 3))
    assert list(released) == [("A2", ("two",))]
    resumed = OrderLogic(order.snapshot())
    released, _ = resumed.on_item((TICK, ROUTE_BUCKETS - 1, 6))
    assert list(released) == [("A1", ("five",))]
    assert ORDER_KEYS and list(resumed.on_eof()[0]) == []


def test_the_order_step_releases_everything_it_holds_at_end_of_input() -> None:
    order = OrderLogic(None)
    for seq in (9, 4, 7):
        order.on_item((ROUTED, seq, f"A{seq}", ()))
    assert [account for account, _ in order.on_eof()[0]] == ["A4", "A7", "A9"]


def test_shelves_pickle_again_only_what_changed() -> None:
    shelved: Shelved[int] = Shelved()
    for number in range(1000):
        shelved[f"P{number}"] = number
    first = shelved.snapshot()
    shelved["P7"] = -7
    second = shelved.snapshot()
    changed = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a is not b]
    assert len(changed) == 1
    restored: Shelved[int] = Shelved(pickle.loads(pickle.dumps(second)))
    assert dict(restored) == {**{f"P{n}": n for n in range(1000)}, "P7": -7}
    del restored["P7"]
    assert "P7" not in restored and len(restored) == 999


def test_a_claims_shard_refuses_a_repeated_payment_id_even_after_a_restart() -> None:
    rules = BillingRules()
    lifecycle = LifecycleLogic(rules, None, None)
    lifecycle.on_item((INPUT, 0, pack_envelope(OPEN)))
    topup = envelope(
        "payments",
        1,
        type="topup",
        payment_id="P1",
        account_id="A1",
        amount="50.00",
        channel="app",
        ts="2026-06-01T01:00:00+08:00",
    )
    answers, _ = lifecycle.on_item((INPUT, 1, pack_envelope(topup)))
    to_claims = [pair for pair in answers if pair[0] == claims_key("P1")]
    assert len(to_claims) == 1 and to_claims[0][1][0] == CLAIM
    assert len(list(answers)) == ROUTE_BUCKETS  # the other buckets are answered directly
    shard = ClaimLogic(rules, None, None)
    first, _ = shard.on_item(to_claims[0][1])
    assert [(key, value[0], value[3]) for key, value in first] == [(route_key("A1"), ANSWER, "A1")]
    restarted = ClaimLogic(rules, None, shard.snapshot())
    again, _ = restarted.on_item((CLAIM, 2, *to_claims[0][1][2:]))
    refused = [item for item in again if not isinstance(item, tuple)]
    assert refused and all("duplicate_payment" in repr(item) for item in refused)
    assert [item[1][3] for item in again if isinstance(item, tuple)] == [None]
