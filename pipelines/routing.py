"""Routing every input to its account without a step that every message passes through.

The input is one ordered stream (S14.1), numbered by the source (``seq``) and followed,
after each batch, by a tick: "everything up to ``seq`` has been sent". From there:

- **Readings** (and relay results, keyed by meter too) go straight to a route bucket
  chosen by their meter (``route_key``). The bucket holds the ownership spans of its
  meters, so it finds each reading's account.
- **Account events and payments** (a few per account a month) go to the one lifecycle
  key, which decides the S14.5 checks in input order and tells every route bucket the
  outcome: the ownership changes of its meters, and the event or payment itself to the
  bucket that forwards it. Every route bucket also gets a placeholder of the message from
  the input, so it holds back what follows until the lifecycle's answer is in.
- **Payment ids** are claimed in one of 1,024 claims shards, chosen by the id (S14.4),
  with the account's open/closed status the lifecycle sent along; the shard answers the
  bucket that forwards the payment. Only the shards a payment touched are snapshotted.
- **Accounts** then receive from several route buckets, so their order is restored: an
  order bucket per group of accounts keeps what arrives sorted by ``seq`` and releases
  what lies below the smallest tick every route bucket has passed on. Each account then
  has one sender again and sees its messages in input order.

What is held back lies within one input batch, and everything of a batch is released once
its tick has passed, so a snapshot (taken between batches) holds almost nothing in flight.
The buckets' counts are fixed: they are part of the recovery store's keys.
"""

from __future__ import annotations

import heapq
import pickle
import zlib
from collections import deque
from collections.abc import Iterable
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
from pipelines.wire import (
    PackedEnvelope,
    pack_envelope,
    pack_routed,
    unpack_envelope,
    unpack_routed,
)

ROUTE_BUCKETS = 8
ORDER_BUCKETS = 8
CLAIM_SHARDS = 1024
LIFECYCLE_KEY = "lifecycle"
ROUTE_KEYS = tuple(f"route-{b}" for b in range(ROUTE_BUCKETS))
ORDER_KEYS = tuple(f"order-{b}" for b in range(ORDER_BUCKETS))
CLAIM_PREFIX = "claims-"

# What travels between the steps: plain tuples tagged by their first field.
INPUT, WAIT, TICK, ANSWER, ROUTED, CLAIM = range(6)

Numbered = tuple[int, Envelope | None]
"""A numbered input (``seq``, envelope), or a tick (``seq``, None)."""


def bucket_of(text: str, buckets: int) -> int:
    """A stable bucket for a key (the same in every process and every run)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets


def route_key(meter_or_account_id: str) -> str:
    """The route bucket of a meter's readings, or the one that forwards an account's events."""
    return ROUTE_KEYS[bucket_of(meter_or_account_id, ROUTE_BUCKETS)]


def claims_key(payment_id: str) -> str:
    """The shard that keeps the claims of a payment id (and of the ids that hash alike)."""
    return f"{CLAIM_PREFIX}{bucket_of(payment_id, CLAIM_SHARDS)}"


def is_claim(pair: tuple[str, object]) -> bool:
    """True for a payment on its way from the lifecycle to its claims shard."""
    return pair[0].startswith(CLAIM_PREFIX)


def order_key(account_id: str) -> str:
    """The order bucket that restores an account's input order."""
    return ORDER_KEYS[bucket_of(account_id, ORDER_BUCKETS)]


class _NumberedPartition(StatefulSourcePartition[Numbered, tuple[Any, int]]):
    def __init__(self, inner: StatefulSourcePartition[Envelope, Any], next_seq: int) -> None:
        self._inner = inner
        self._next = next_seq

    def next_batch(self) -> list[Numbered]:
        batch = self._inner.next_batch()
        if not batch:
            return []
        first = self._next
        self._next += len(batch)
        numbered: list[Numbered] = list(zip(range(first, self._next), batch, strict=True))
        numbered.append((self._next - 1, None))
        return numbered

    def next_awake(self):  # noqa: ANN201 - Bytewax's own signature
        return self._inner.next_awake()

    def snapshot(self) -> tuple[Any, int]:
        return self._inner.snapshot(), self._next

    def close(self) -> None:
        self._inner.close()


class NumberedSource(FixedPartitionedSource[Numbered, tuple[Any, int]]):
    """An ordered one-partition source, its items numbered and each batch closed by a tick.

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


def dispatch(metrics: Metrics | None, item: Numbered) -> list[tuple[str, tuple[Any, ...]]]:
    """Where a numbered input goes: its route bucket, or the lifecycle and a placeholder."""
    seq, envelope = item
    if envelope is None:
        return [(key, (TICK, seq, bucket)) for bucket, key in enumerate(ROUTE_KEYS)]
    if metrics is not None:
        metrics.of(metrics.messages_in, envelope.topic).inc()
    packed = (INPUT, seq, pack_envelope(envelope))
    if envelope.topic in METER_KEYED:
        return [(route_key(envelope.key), packed)]
    return [(LIFECYCLE_KEY, packed), *((key, (WAIT, seq)) for key in ROUTE_KEYS)]


def _tally(metrics: Metrics | None, envelope: Envelope, rejected: Rejected) -> None:
    if metrics is not None:
        metrics.of(metrics.messages_rejected, envelope.topic, rejected.reason).inc()
        metrics.count_outputs(rejected)


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
        _, seq, packed = value
        envelope = unpack_envelope(packed)
        message = parse_input(envelope, self.rules)
        if self.metrics is not None:
            self.metrics.of(self.metrics.step_items, "lifecycle").inc()
        answers: list[tuple[str, tuple[Any, ...]]] = []
        if isinstance(message, Rejected):
            _tally(self.metrics, envelope, message)
            return [*message, *self._answers(seq)], StatefulLogic.RETAIN
        if isinstance(message, AccountEvent):
            self._frozen = None
            verdict, changes = self.lifecycle.check(message)
            item = pack_routed(Routed(envelope, message, verdict))
            target = route_key(message.account_id)
            answers = self._answers(seq, changes, target, message.account_id, item)
        elif isinstance(message, Reading):  # a reading on another topic cannot happen
            msg = "a reading reached the lifecycle"
            raise TypeError(msg)
        else:
            # The payment's answer comes from its claims shard; the other buckets' from here.
            is_open = self.lifecycle.is_open(message.account_id)
            item = pack_routed(Routed(envelope, message))
            target = route_key(message.account_id)
            claim = (CLAIM, seq, target, message.account_id, item, is_open)
            answers = [(claims_key(message.payment_id), claim)]
            answers += [a for a in self._answers(seq) if a[0] != target]
        return answers, StatefulLogic.RETAIN

    @staticmethod
    def _answers(
        seq: int,
        changes: Iterable[OwnershipChange] = (),
        target: str | None = None,
        account_id: str | None = None,
        item: tuple[Any, ...] | None = None,
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """One answer per route bucket: its meters' changes, and the item for ``target``."""
        mine: dict[str, list[tuple[str, str | None, Any]]] = {key: [] for key in ROUTE_KEYS}
        for change in changes:
            mine[route_key(change.meter_id)].append(tuple(change))  # type: ignore[arg-type]
        return [
            (key, (ANSWER, seq, tuple(mine[key]), account_id, item))
            if key == target
            else (key, (ANSWER, seq, tuple(mine[key]), None, None))
            for key in ROUTE_KEYS
        ]

    def snapshot(self) -> bytes:
        if self._frozen is None:
            self._frozen = pickle.dumps(self.lifecycle, protocol=pickle.HIGHEST_PROTOCOL)
        return self._frozen


class RouteLogic(StatefulLogic[tuple[Any, ...], object, bytes]):
    """A route bucket: the ownership spans of its meters.

    They change only with account events; a snapshot re-pickles only the shelves that
    changed (``pipelines.shelves``).

    Inputs arrive in input order from the source; the lifecycle's answers arrive on their
    own path, so a placeholder holds everything behind it until its answer is in.
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
        out: list[object] = []
        if value[0] == ANSWER:
            self.answers[value[1]] = value
        elif not self.queue and value[0] == INPUT:
            self._reading(value[1], value[2], out)  # the common case: nothing held back
            return out, StatefulLogic.RETAIN
        else:
            self.queue.append(value)
        while self.queue:
            head = self.queue[0]
            if head[0] == WAIT:
                answer = self.answers.pop(head[1], None)
                if answer is None:
                    break
                self._answer(answer, out)
            elif head[0] == TICK:
                out.extend((key, (TICK, head[2], head[1])) for key in ORDER_KEYS)
            else:
                self._reading(head[1], head[2], out)
            self.queue.popleft()
        return out, StatefulLogic.RETAIN

    def _reading(self, seq: int, packed: PackedEnvelope, out: list[object]) -> None:
        envelope = unpack_envelope(packed)
        if self.metrics is not None:
            self.metrics.of(self.metrics.step_items, "route").inc()
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
            out.extend(reading)
            return
        account_id, item = reading
        out.append((order_key(account_id), (ROUTED, seq, account_id, pack_routed(item))))

    def _answer(self, answer: tuple[Any, ...], out: list[object]) -> None:
        _, seq, changes, account_id, item = answer
        for change in changes:
            spans = self.spans.get(change[0])
            if spans is None:
                spans = self.spans[change[0]] = MeterSpans()
            spans.change(OwnershipChange(*change))
            self.spans.touched(change[0])
        if item is not None:
            out.append((order_key(account_id), (ROUTED, seq, account_id, item)))

    def snapshot(self) -> bytes:
        state = (self.spans.snapshot(), self.queue, self.answers)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


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
        _, seq, target, account_id, item, is_open = value
        routed = unpack_routed(item)
        claimed = route_payment(
            routed.envelope,
            routed.message,  # type: ignore[arg-type]
            self.claims,
            is_open,
            self.rules,
        )
        if isinstance(claimed, Rejected):
            _tally(self.metrics, routed.envelope, claimed)
            return [*claimed, (target, (ANSWER, seq, (), None, None))], StatefulLogic.RETAIN
        return [(target, (ANSWER, seq, (), account_id, item))], StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.claims, protocol=pickle.HIGHEST_PROTOCOL)


class OrderLogic(StatefulLogic[tuple[Any, ...], tuple[str, tuple[Any, ...]], bytes]):
    """Restores input order for a group of accounts from what every route bucket sends.

    An item is released once every route bucket's tick has passed its ``seq``: by then
    nothing earlier can still arrive, since each bucket sends in input order.
    """

    def __init__(self, resume: bytes | None) -> None:
        self.held: list[tuple[int, str, tuple[Any, ...]]] = []
        self.ticks = [-1] * ROUTE_BUCKETS
        if resume:
            self.held, self.ticks = pickle.loads(resume)  # noqa: S301 - our own snapshot

    def on_item(self, value: tuple[Any, ...]) -> tuple[Iterable[tuple[str, tuple[Any, ...]]], bool]:
        if value[0] == ROUTED:
            heapq.heappush(self.held, value[1:])
            return (), StatefulLogic.RETAIN
        _, bucket, seq = value
        self.ticks[bucket] = seq
        return self._release(min(self.ticks)), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[tuple[str, tuple[Any, ...]]], bool]:
        return self._release(None), StatefulLogic.RETAIN

    def _release(self, upto: int | None) -> list[tuple[str, tuple[Any, ...]]]:
        released = []
        held = self.held
        while held and (upto is None or held[0][0] <= upto):
            _, account_id, item = heapq.heappop(held)
            released.append((account_id, item))
        return released

    def snapshot(self) -> bytes:
        return pickle.dumps((self.held, self.ticks), protocol=pickle.HIGHEST_PROTOCOL)


def is_keyed(item: object) -> bool:
    """True for an item on its way to a key; False for an output (a rejection's rows)."""
    return isinstance(item, tuple)


def outputs_of(item: object) -> list[Output]:
    """An output on its own, as a list for ``flat_map``."""
    return [item]  # type: ignore[list-item]
