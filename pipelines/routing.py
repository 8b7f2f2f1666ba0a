"""Routing every input to its account, a batch at a time, without a step every message passes.

The input is one ordered stream (S14.1). The source numbers every message (``seq``) and
hands on what one read returned as one chunk; the chunk's last ``seq`` is its tick
("everything up to here has been sent"). Every step below takes a batch per key per call
and returns batches, so the engine's cost is paid per batch, not per reading:

- **Readings** (and relay results, keyed by meter too) go straight to a route bucket
  chosen by their meter (``route_key``): ``dispatch`` splits a chunk into one sub-batch
  per route bucket. The bucket holds the ownership spans of its meters, so it finds each
  reading's account.
- **Account events and payments** (a few per account a month) go, as one sub-batch per
  chunk, to the one lifecycle key, which decides the S14.5 checks in input order and tells
  every route bucket the outcome: the ownership changes of its meters, and the event or
  payment itself to the bucket that forwards it. Every route bucket's sub-batch also holds
  a placeholder of the message, so the bucket holds back what follows until the answer is in.
- **Payment ids** are claimed in one of 1,024 claims shards, chosen by the id (S14.4),
  with the account's open/closed status the lifecycle sent along; the shard answers the
  bucket that forwards the payment. Only the shards a payment touched are snapshotted.
- **Accounts** then receive from several route buckets, so their order is restored: an
  order bucket per group of accounts keeps what arrives sorted by ``seq`` and releases what
  lies below the smallest tick every route bucket has passed on, grouped by account key
  (``account_key``: the order bucket itself, or each account on its own).

What is held back lies within one input chunk, and everything of a chunk is released once
its tick has passed, so a snapshot (taken between chunks) holds almost nothing in flight.
The buckets' counts are fixed: they are part of the recovery store's keys.
"""

from __future__ import annotations

import heapq
import pickle
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic

from billing.directory import Lifecycle, MeterSpans, OwnershipChange
from billing.engine import (
    Routed,
    parse_input,
    route_command_result,
    route_payment,
    route_reading,
)
from billing.messages import METER_KEYED, AccountEvent, CommandResult, Envelope, Reading
from billing.outputs import Output
from billing.rejections import Ignored, Rejected
from billing.rules import BillingRules
from pipelines.metrics import Metrics
from pipelines.shelves import Shelved
from pipelines.wire import InputEntries, RoutedEntries

ROUTE_BUCKETS = 8
ORDER_BUCKETS = 8
CLAIM_SHARDS = 1024
LIFECYCLE_KEY = "lifecycle"
# Bytewax sends a key to a worker by a hash of its own; these names put bucket b on worker
# b mod n for 2, 4 and 8 workers (and 3: 3, 3 and 2 buckets), so every worker routes and
# orders its share. "route-0" … "route-7" put 6 route buckets of 8 on one of two workers.
# tests/unit/test_bucket_workers.py checks the placement with Bytewax itself.
ROUTE_KEYS = (
    "route-0.5",
    "route-1.31",
    "route-2",
    "route-3.16",
    "route-4.14",
    "route-5.5",
    "route-6.34",
    "route-7.11",
)
ORDER_KEYS = (
    "order-0.14",
    "order-1.71",
    "order-2",
    "order-3.4",
    "order-4.24",
    "order-5.32",
    "order-6.46",
    "order-7.12",
)
CLAIM_PREFIX = "claims-"

# What travels between the steps: plain tuples tagged by their first field.
INPUT, WAIT, TICK, ANSWERS, ROUTED, CLAIMS, DECIDE = range(7)

Chunk = tuple[int, list[Envelope]]
"""What one read of the source returned: the ``seq`` of its first message, and the messages."""
Keyed = tuple[str, tuple[Any, ...]]
"""A batch on its way to a key."""


def bucket_of(text: str, buckets: int) -> int:
    """A stable bucket for a key (the same in every process and every run)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets


@lru_cache(maxsize=1 << 16)  # meters and accounts come back every quarter hour
def route_key(meter_or_account_id: str) -> str:
    """The route bucket of a meter's readings, or the one that forwards an account's events."""
    return ROUTE_KEYS[bucket_of(meter_or_account_id, ROUTE_BUCKETS)]


@lru_cache(maxsize=1 << 16)
def route_bucket(meter_id: str) -> int:
    """The index of ``route_key(meter_id)`` in ``ROUTE_KEYS``."""
    return bucket_of(meter_id, ROUTE_BUCKETS)


def claims_key(payment_id: str) -> str:
    """The shard that keeps the claims of a payment id (and of the ids that hash alike)."""
    return f"{CLAIM_PREFIX}{bucket_of(payment_id, CLAIM_SHARDS)}"


def is_claim(pair: tuple[str, object]) -> bool:
    """True for payments on their way from the lifecycle to their claims shard."""
    return pair[0].startswith(CLAIM_PREFIX)


@lru_cache(maxsize=1 << 16)
def order_key(account_id: str) -> str:
    """The order bucket that restores an account's input order."""
    return ORDER_KEYS[bucket_of(account_id, ORDER_BUCKETS)]


def account_key_of(by_bucket: bool) -> Callable[[str], str]:
    """How accounts are keyed in the accounts step: by order bucket, or each on its own.

    Keyed by bucket, a chunk's readings reach their accounts in a few calls (the replay);
    keyed by account, a recovery snapshot holds only the accounts an epoch touched (live).
    """
    return order_key if by_bucket else str


class _NumberedPartition(StatefulSourcePartition[Chunk, tuple[Any, int]]):
    def __init__(self, inner: StatefulSourcePartition[Envelope, Any], next_seq: int) -> None:
        self._inner = inner
        self._next = next_seq

    def next_batch(self) -> list[Chunk]:
        batch = self._inner.next_batch()
        if not batch:
            return []
        first = self._next
        self._next += len(batch)
        return [(first, batch)]

    def next_awake(self):  # noqa: ANN201 - Bytewax's own signature
        return self._inner.next_awake()

    def snapshot(self) -> tuple[Any, int]:
        return self._inner.snapshot(), self._next

    def close(self) -> None:
        self._inner.close()


class NumberedSource(FixedPartitionedSource[Chunk, tuple[Any, int]]):
    """An ordered one-partition source whose reads become numbered chunks.

    The next number is part of the resume state, so a recovered run numbers on exactly
    where the snapshot's states stopped.
    """

    def __init__(self, inner: FixedPartitionedSource[Envelope, Any]) -> None:
        self.inner = inner

    def list_parts(self) -> list[str]:
        parts = self.inner.list_parts()  # none in the processes of a cluster that do not read
        if len(parts) > 1:
            msg = f"the billing input must be one ordered stream, not {len(parts)} partitions"
            raise ValueError(msg)
        return parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[Any, int] | None
    ) -> _NumberedPartition:
        inner_resume, next_seq = resume_state if resume_state is not None else (None, 0)
        return _NumberedPartition(self.inner.build_part(step_id, for_part, inner_resume), next_seq)


def dispatch(metrics: Metrics | None, chunk: Chunk) -> list[Keyed]:
    """A chunk split by destination: one sub-batch per route bucket, one for the lifecycle.

    Every route bucket gets its sub-batch, empty or not, since it carries the chunk's tick.
    """
    first, envelopes = chunk
    per_bucket = [InputEntries() for _ in ROUTE_KEYS]  # cross processes as columns
    decide: list[tuple[int, Envelope]] = []
    received: dict[str, int] = {}  # counted per chunk: every increment takes a lock
    for seq, envelope in enumerate(envelopes, first):
        received[envelope.topic] = received.get(envelope.topic, 0) + 1
        if envelope.topic in METER_KEYED:
            per_bucket[route_bucket(envelope.key)].append((INPUT, seq, envelope))
        else:
            decide.append((seq, envelope))
            for entries in per_bucket:
                entries.append((WAIT, seq))
    if metrics is not None:
        for topic, count in received.items():
            metrics.of(metrics.messages_in, topic).inc(count)
    tick = first + len(envelopes) - 1
    out: list[Keyed] = [(LIFECYCLE_KEY, (DECIDE, decide))] if decide else []
    for bucket, key in enumerate(ROUTE_KEYS):
        out.append((key, (INPUT, bucket, per_bucket[bucket], tick)))
    return out


def _tally(metrics: Metrics | None, envelope: Envelope, rejected: Rejected) -> None:
    if metrics is not None:
        metrics.of(metrics.messages_rejected, envelope.topic, rejected.reason).inc()
        metrics.count_outputs(rejected)


class _Batches:
    """What a step sends on: one batch per destination key, and the outputs of refusals."""

    def __init__(self, batch: Callable[[], list[Any]] = list) -> None:
        self.keyed: dict[str, list[Any]] = {}
        self.refused: list[Output] = []
        self._batch = batch

    def add(self, key: str, entry: Any) -> None:  # noqa: ANN401 - entries are plain tuples
        entries = self.keyed.get(key)
        if entries is None:
            entries = self.keyed[key] = self._batch()
        entries.append(entry)

    def items(self, tag: int) -> list[object]:
        items: list[object] = [(key, (tag, entries)) for key, entries in self.keyed.items()]
        if self.refused:
            items.append(self.refused)
        return items


class LifecycleLogic(StatefulLogic[tuple[Any, ...], object, bytes]):
    """Account events and payments in input order: the S14.5 checks, answered to every bucket.

    Its state changes only with account events, so its snapshot is pickled once per change.
    """

    def __init__(self, rules: BillingRules, metrics: Metrics | None, resume: bytes | None) -> None:
        self.rules = rules
        self.metrics = metrics
        self.lifecycle: Lifecycle = pickle.loads(resume) if resume else Lifecycle()  # noqa: S301 - our own snapshot
        self._frozen = resume

    def on_item(self, value: tuple[Any, ...]) -> tuple[Iterable[object], bool]:
        answers = _Batches()
        claims = _Batches()
        for seq, envelope in value[1]:
            self._decide(seq, envelope, answers, claims)
        if self.metrics is not None:
            self.metrics.of(self.metrics.step_items, "lifecycle").inc(len(value[1]))
        return [*claims.items(CLAIMS), *answers.items(ANSWERS)], StatefulLogic.RETAIN

    def _decide(self, seq: int, envelope: Envelope, answers: _Batches, claims: _Batches) -> None:
        message = parse_input(envelope, self.rules)
        if isinstance(message, Rejected):
            _tally(self.metrics, envelope, message)
            answers.refused.extend(message)
            _answer_all(answers, seq)
            return
        if isinstance(message, AccountEvent):
            self._frozen = None
            verdict, changes = self.lifecycle.check(message)
            item = Routed(envelope, message, verdict)
            target = route_key(message.account_id)
            _answer_all(answers, seq, changes, target, message.account_id, item)
        elif isinstance(message, Reading):  # a reading on another topic cannot happen
            msg = "a reading reached the lifecycle"
            raise TypeError(msg)
        else:
            # The payment's answer comes from its claims shard; the other buckets' from here.
            is_open = self.lifecycle.is_open(message.account_id)
            item = Routed(envelope, message)
            target = route_key(message.account_id)
            claims.add(
                claims_key(message.payment_id), (seq, target, message.account_id, item, is_open)
            )
            _answer_all(answers, seq, skip=target)

    def snapshot(self) -> bytes:
        if self._frozen is None:
            self._frozen = pickle.dumps(self.lifecycle, protocol=pickle.HIGHEST_PROTOCOL)
        return self._frozen


def _answer_all(
    answers: _Batches,
    seq: int,
    changes: Iterable[OwnershipChange] = (),
    target: str | None = None,
    account_id: str | None = None,
    item: tuple[Any, ...] | None = None,
    *,
    skip: str | None = None,
) -> None:
    """One answer per route bucket (but ``skip``): its meters' changes, the item for ``target``."""
    mine: dict[str, list[tuple[str, str | None, Any]]] = {}
    for change in changes:
        mine.setdefault(route_key(change.meter_id), []).append(tuple(change))  # type: ignore[arg-type]
    for key in ROUTE_KEYS:
        if key == skip:
            continue
        if key == target:
            answers.add(key, (seq, tuple(mine.get(key, ())), account_id, item))
        else:
            answers.add(key, (seq, tuple(mine.get(key, ())), None, None))


class ClaimLogic(StatefulLogic[tuple[Any, ...], object, bytes]):
    """A claims shard: the payment ids claimed so far that hash to it (S14.4).

    Payments reach it from the lifecycle, one sender, in input order; it answers the route
    bucket that forwards the payment's account, with the payment or without it. Only the
    shards a payment touched in an epoch are snapshotted.
    """

    def __init__(self, rules: BillingRules, metrics: Metrics | None, resume: bytes | None) -> None:
        self.rules = rules
        self.metrics = metrics
        self.claims: dict[str, tuple[str, bool]] = pickle.loads(resume) if resume else {}  # noqa: S301

    def on_item(self, value: tuple[Any, ...]) -> tuple[Iterable[object], bool]:
        answers = _Batches()
        for seq, target, account_id, item, is_open in value[1]:
            claimed = route_payment(
                item.envelope,
                item.message,
                self.claims,
                is_open,
                self.rules,
            )
            if isinstance(claimed, Rejected):
                _tally(self.metrics, item.envelope, claimed)
                answers.refused.extend(claimed)
                answers.add(target, (seq, (), None, None))
            else:
                answers.add(target, (seq, (), account_id, item))
        return answers.items(ANSWERS), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.claims, protocol=pickle.HIGHEST_PROTOCOL)


class RouteLogic(StatefulLogic[tuple[Any, ...], object, bytes]):
    """A route bucket: the ownership spans of its meters.

    They change only with account events; a snapshot re-pickles only the shelves that
    changed (``pipelines.shelves``).

    Inputs arrive in input order from the source; the lifecycle's answers arrive on their
    own path, so a placeholder holds everything behind it until its answer is in. What it
    sends on is one batch per order bucket per call, with the tick it has passed.
    """

    def __init__(self, rules: BillingRules, metrics: Metrics | None, resume: bytes | None) -> None:
        self.rules = rules
        self.metrics = metrics
        self.queue: deque[tuple[Any, ...]] = deque()
        self.answers: dict[int, tuple[Any, ...]] = {}
        spans = None
        if resume:
            spans, self.queue, self.answers = pickle.loads(resume)  # noqa: S301
        self.spans: Shelved[MeterSpans] = Shelved(spans)

    def on_item(self, value: tuple[Any, ...]) -> tuple[Iterable[object], bool]:
        out = _Routed()
        if value[0] == ANSWERS:
            for answer in value[1]:
                self.answers[answer[0]] = answer
        else:
            _, bucket, entries, tick = value
            queue = self.queue
            for entry in entries:
                if not queue and entry[0] == INPUT:
                    self._reading(entry[1], entry[2], out)  # the common case: nothing held back
                else:
                    queue.append(entry)
            if queue:
                queue.append((TICK, tick, bucket))
            else:
                out.tick = (bucket, tick)
        self._drain(out)
        if self.metrics is not None and out.readings:
            self.metrics.of(self.metrics.step_items, "route").inc(out.readings)
        return out.items(), StatefulLogic.RETAIN

    def _drain(self, out: _Routed) -> None:
        queue = self.queue
        while queue:
            head = queue[0]
            if head[0] == WAIT:
                answer = self.answers.pop(head[1], None)
                if answer is None:
                    break
                self._answer(answer, out)
            elif head[0] == TICK:
                out.tick = (head[2], head[1])
            else:
                self._reading(head[1], head[2], out)
            queue.popleft()

    def _reading(self, seq: int, envelope: Envelope, out: _Routed) -> None:
        out.readings += 1
        reading = parse_input(envelope, self.rules)
        if not isinstance(reading, Rejected):
            spans = self.spans.get(reading.meter_id)  # type: ignore[union-attr]
            owner = None if spans is None else spans.owner_at(reading.ts)
            if isinstance(reading, CommandResult):
                reading = route_command_result(envelope, reading, owner)
            else:
                reading = route_reading(envelope, reading, owner)  # type: ignore[arg-type]
        if isinstance(reading, Ignored):
            if self.metrics is not None:  # a relay result for no account's command
                self.metrics.of(self.metrics.messages_applied, envelope.topic).inc()
            return
        if isinstance(reading, Rejected):
            _tally(self.metrics, envelope, reading)
            out.batches.refused.extend(reading)
            return
        account_id, item = reading
        out.batches.add(order_key(account_id), (seq, account_id, item))

    def _answer(self, answer: tuple[Any, ...], out: _Routed) -> None:
        seq, changes, account_id, item = answer
        for change in changes:
            spans = self.spans.get(change[0])
            if spans is None:
                spans = self.spans[change[0]] = MeterSpans()
            spans.change(OwnershipChange(*change))
            self.spans.touched(change[0])
        if item is not None:
            out.batches.add(order_key(account_id), (seq, account_id, item))

    def snapshot(self) -> bytes:
        state = (self.spans.snapshot(), self.queue, self.answers)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class _Routed:
    """What one call of a route bucket sends on: batches per order bucket, and its tick."""

    def __init__(self) -> None:
        self.batches = _Batches(RoutedEntries)  # cross processes as columns
        self.tick: tuple[int, int] | None = None  # (route bucket, seq) passed in this call
        self.readings = 0

    def items(self) -> list[object]:
        keyed = self.batches.keyed
        items: list[object] = []
        tick = self.tick
        for key in ORDER_KEYS if tick is not None else keyed:
            items.append((key, (ROUTED, keyed.get(key) or RoutedEntries(), tick)))
        if self.batches.refused:
            items.append(self.batches.refused)
        return items


class OrderLogic(StatefulLogic[tuple[Any, ...], Keyed, bytes]):
    """Restores input order for a group of accounts from what every route bucket sends.

    An item is released once every route bucket's tick has passed its ``seq``: by then
    nothing earlier can still arrive, since each bucket sends in input order. Released
    items leave as one batch per account key, in input order.
    """

    def __init__(self, account_key: Callable[[str], str], resume: bytes | None) -> None:
        self.account_key = account_key
        self.held: list[tuple[int, str, tuple[Any, ...]]] = []
        self.ticks = [-1] * ROUTE_BUCKETS
        if resume:
            self.held, self.ticks = pickle.loads(resume)  # noqa: S301 - our own snapshot

    def on_item(self, value: tuple[Any, ...]) -> tuple[Iterable[Keyed], bool]:
        _, entries, tick = value
        held = self.held
        for entry in entries:
            heapq.heappush(held, entry)
        if tick is None:
            return (), StatefulLogic.RETAIN
        bucket, seq = tick
        self.ticks[bucket] = seq
        return self._release(min(self.ticks)), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Keyed], bool]:
        return self._release(None), StatefulLogic.RETAIN

    def _release(self, upto: int | None) -> list[Keyed]:
        released: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        held = self.held
        key_of = self.account_key
        while held and (upto is None or held[0][0] <= upto):
            _, account_id, item = heapq.heappop(held)
            key = key_of(account_id)
            batch = released.get(key)
            if batch is None:
                batch = released[key] = []
            batch.append((account_id, item))
        return list(released.items())  # type: ignore[arg-type]

    def snapshot(self) -> bytes:
        return pickle.dumps((self.held, self.ticks), protocol=pickle.HIGHEST_PROTOCOL)


def is_keyed(item: object) -> bool:
    """True for a batch on its way to a key; False for the outputs of refusals (a list)."""
    return isinstance(item, tuple)


def outputs_of(item: object) -> list[Output]:
    """The outputs of refusals, as they were sent."""
    return item  # type: ignore[return-value]
