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
    ANSWERS,
    CLAIMS,
    DECIDE,
    INPUT,
    LIFECYCLE_KEY,
    ORDER_KEYS,
    ROUTE_BUCKETS,
    ROUTE_KEYS,
    ROUTED,
    WAIT,
    ClaimLogic,
    LifecycleLogic,
    NumberedSource,
    OrderLogic,
    RouteLogic,
    account_key_of,
    bucket_of,
    claims_key,
    dispatch,
    order_key,
    route_key,
)
from pipelines.shelves import Shelved

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


def test_the_source_numbers_what_each_read_returns_as_one_chunk() -> None:
    items = [OPEN, READING, READING, READING, READING]
    source = NumberedSource(TestingSource(items, batch_size=2))
    part = source.build_part("input", "iterable", None)
    first, second = part.next_batch(), part.next_batch()
    assert first == [(0, [OPEN, READING])]
    assert second == [(2, [READING, READING])]
    resumed = source.build_part("input", "iterable", part.snapshot())
    assert resumed.next_batch() == [(4, [READING])]


def test_a_chunk_is_split_into_one_batch_per_route_bucket_and_one_for_the_lifecycle() -> None:
    keyed = dispatch(None, (3, [OPEN, READING]))
    assert keyed[0] == (LIFECYCLE_KEY, (DECIDE, [(3, OPEN)]))
    batches = dict(keyed[1:])
    assert list(batches) == list(ROUTE_KEYS)  # every bucket: each batch carries the tick
    for bucket, key in enumerate(ROUTE_KEYS):
        tag, to, entries, tick = batches[key]
        assert (tag, to, tick) == (INPUT, bucket, 4)
        reading = [(INPUT, 4, READING)] if key == route_key("M1") else []
        assert entries == [(WAIT, 3), *reading]
    only_readings = dispatch(None, (9, [READING]))
    assert [key for key, _ in only_readings] == list(ROUTE_KEYS)  # nothing for the lifecycle


def test_a_bucket_holds_what_follows_a_placeholder_until_the_lifecycle_answers() -> None:
    rules = BillingRules()
    me = ROUTE_KEYS.index(route_key("M1"))
    bucket = RouteLogic(rules, None, None)
    lifecycle = LifecycleLogic(rules, None, None)
    # The reading (seq 1) reaches the meter's bucket before the lifecycle answered the open.
    held, _ = bucket.on_item((INPUT, me, [(WAIT, 0), (INPUT, 1, READING)], 1))
    assert list(held) == []  # without the open it would be refused as unknown_meter
    answers, _ = lifecycle.on_item((DECIDE, [(0, OPEN)]))
    answer = dict(answers)[route_key("M1")]
    assert answer[0] == ANSWERS
    released, _ = bucket.on_item(answer)
    keyed = dict(item for item in released if isinstance(item, tuple))
    assert list(keyed) == list(ORDER_KEYS)  # the tick passed: every order bucket hears it
    routed = [entry for _, entries, _ in keyed.values() for entry in entries]
    expected = [(0, "A1"), (1, "A1")] if route_key("A1") == route_key("M1") else [(1, "A1")]
    assert [entry[:2] for entry in routed] == expected
    assert {tick for _, _, tick in keyed.values()} == {(me, 1)}
    # Restored from its snapshot, the bucket still knows the meter's owner.
    again = RouteLogic(rules, None, bucket.snapshot())
    routed_again, _ = again.on_item((INPUT, me, [(INPUT, 2, READING)], 2))
    batch = dict(routed_again)[order_key("A1")]
    assert [entry[1] for entry in batch[1]] == ["A1"]


def test_order_is_restored_below_the_smallest_tick_of_every_route_bucket() -> None:
    order = OrderLogic(account_key_of(False), None)
    assert list(order.on_item((ROUTED, [(5, "A1", ("five",)), (2, "A2", ("two",))], None))[0]) == []
    for bucket in range(ROUTE_BUCKETS - 1):
        assert list(order.on_item((ROUTED, [], (bucket, 6)))[0]) == []  # one bucket behind
    released, _ = order.on_item((ROUTED, [], (ROUTE_BUCKETS - 1, 3)))
    assert list(released) == [("A2", [("A2", ("two",))])]
    resumed = OrderLogic(account_key_of(False), order.snapshot())
    released, _ = resumed.on_item((ROUTED, [], (ROUTE_BUCKETS - 1, 6)))
    assert list(released) == [("A1", [("A1", ("five",))])]
    assert ORDER_KEYS and list(resumed.on_eof()[0]) == []


def test_released_items_leave_as_one_batch_per_account_bucket_in_input_order() -> None:
    order = OrderLogic(account_key_of(True), None)
    order.on_item((ROUTED, [(seq, f"A{seq}", (seq,)) for seq in (9, 4, 7, 12)], None))
    released = dict(order.on_eof()[0])
    assert sum(len(batch) for batch in released.values()) == 4
    for key, batch in released.items():
        assert all(order_key(account) == key for account, _ in batch)
        assert [item for _, item in batch] == sorted(item for _, item in batch)


def test_the_order_step_releases_everything_it_holds_at_end_of_input() -> None:
    order = OrderLogic(account_key_of(False), None)
    order.on_item((ROUTED, [(seq, f"A{seq}", ()) for seq in (9, 4, 7)], None))
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
    lifecycle.on_item((DECIDE, [(0, OPEN)]))
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
    answers, _ = lifecycle.on_item((DECIDE, [(1, topup)]))
    to_claims = [pair for pair in answers if pair[0] == claims_key("P1")]
    assert len(to_claims) == 1 and to_claims[0][1][0] == CLAIMS
    claim = to_claims[0][1][1][0]
    # The other buckets are answered directly; the account's own by the shard.
    direct = [key for key, _ in answers if key != claims_key("P1")]
    assert sorted(direct) == sorted(k for k in ROUTE_KEYS if k != route_key("A1"))
    shard = ClaimLogic(rules, None, None)
    first, _ = shard.on_item(to_claims[0][1])
    assert [(key, value[0], value[1][0][2]) for key, value in first] == [
        (route_key("A1"), ANSWERS, "A1")
    ]
    restarted = ClaimLogic(rules, None, shard.snapshot())
    again, _ = restarted.on_item((CLAIMS, [(2, *claim[1:])]))
    refused = [item for item in again if not isinstance(item, tuple)]
    assert refused and all("duplicate_payment" in repr(item) for item in refused)
    assert [item[1][1][0][2] for item in again if isinstance(item, tuple)] == [None]
