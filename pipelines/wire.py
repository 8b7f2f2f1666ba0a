"""What crosses workers in the billing flow: columns of strings, ints and timestamps.

Bytewax pickles every item that moves to another process. Pickling a dataclass (an
``Envelope``, a ``Routed`` holding an envelope and a message) costs several times a tuple
of the same fields, so they pickle as those tuples (see BENCHMARKS.md "Exchange"):
importing this module registers the packers below with ``copyreg``. The two batches that
carry every reading go further: a route bucket's sub-batch (``InputEntries``) and what a
route bucket sends an order bucket (``RoutedEntries``) pickle as a few lists, one per
field, instead of a reduce call per message. Inside one process nothing is packed at all.
Amounts travel as the text of their Decimal, which gives back the very same Decimal
(digits and exponent).
"""

from __future__ import annotations

import copyreg
from decimal import Decimal
from typing import Any

from billing.engine import Routed, routed_readings
from billing.messages import (
    METER_KEYED,
    AccountEvent,
    CommandResult,
    Envelope,
    Message,
    Reading,
    Redeem,
    TopUp,
)
from billing.numbers import packed_milli

PackedEnvelope = tuple[Any, ...]
PackedRouted = tuple[Any, ...]

_READING, _TOPUP, _REDEEM, _EVENT, _RESULT = 0, 1, 2, 3, 4


def pack_envelope(envelope: Envelope) -> PackedEnvelope:
    """An input envelope as a tuple of its fields (decoded payload included)."""
    return (
        envelope.topic,
        envelope.position,
        envelope.raw,
        envelope.received_at,
        envelope.payload,
        envelope.raw_base64,
        envelope.problem,
    )


def unpack_envelope(packed: PackedEnvelope) -> Envelope:
    """The envelope ``pack_envelope`` packed."""
    return Envelope(*packed)


def pack_routed(routed: Routed) -> PackedRouted:
    """A routed message as a flat tuple.

    The account side only needs the envelope to record a refusal, so its decoded payload
    stays behind; its key (the one field of the payload a refusal names) travels instead.
    """
    envelope, message = routed.envelope, routed.message
    head = (
        envelope.topic,
        envelope.position,
        envelope.key,
        envelope.raw,
        envelope.raw_base64,
        envelope.received_at,
        routed.verdict,
    )
    return head + _pack_message(message)


def unpack_routed(packed: PackedRouted) -> Routed:
    """The routed message ``pack_routed`` packed; its envelope keeps only the key of its payload."""
    topic, position, key, raw, raw_base64, received_at, verdict = packed[:7]
    field = "meter_id" if topic in METER_KEYED else "account_id"
    payload = {field: key} if key else None
    envelope = Envelope(topic, position, raw, received_at, payload, raw_base64)
    return Routed(envelope, _unpack_message(packed[7:]), verdict)


def _pack_message(message: Message) -> tuple[Any, ...]:
    if isinstance(message, Reading):
        return (_READING, message.meter_id, message.ts, message.milli, message.source)
    if isinstance(message, TopUp):
        return (
            _TOPUP,
            message.payment_id,
            message.account_id,
            str(message.amount),
            message.channel,
            message.ts,
            message.request_id,
        )
    if isinstance(message, Redeem):
        return (_REDEEM, message.payment_id, message.account_id, message.points, message.ts)
    if isinstance(message, CommandResult):
        return (
            _RESULT,
            message.command_id,
            message.meter_id,
            message.ok,
            message.ts,
            message.error,
        )
    return (
        _EVENT,
        message.kind,
        message.account_id,
        message.ts,
        message.meter_id,
        message.plan,
        message.fields,
    )


def _unpack_message(packed: tuple[Any, ...]) -> Message:
    kind = packed[0]
    if kind == _READING:
        return Reading(packed[1], packed[2], packed_milli(packed[3]), packed[4])
    if kind == _TOPUP:
        _, payment_id, account_id, amount, channel, ts, request_id = packed
        return TopUp(payment_id, account_id, Decimal(amount), channel, ts, request_id)
    if kind == _REDEEM:
        return Redeem(*packed[1:])
    if kind == _RESULT:
        return CommandResult(*packed[1:])
    _, event_kind, account_id, ts, meter_id, plan, fields = packed
    return AccountEvent(event_kind, account_id, ts, meter_id, plan, fields)


def _reduce_envelope(envelope: Envelope) -> tuple[object, tuple[PackedEnvelope]]:
    return unpack_envelope, (pack_envelope(envelope),)


def _reduce_routed(routed: Routed) -> tuple[object, tuple[PackedRouted]]:
    return unpack_routed, (pack_routed(routed),)


class InputEntries(list):  # type: ignore[type-arg]
    """A route bucket's sub-batch of a chunk: ``(INPUT, seq, envelope)`` and ``(WAIT, seq)``.

    It crosses processes as columns.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        envelopes = [entry[2] for entry in self if len(entry) == 3]
        shapes = bytes(len(entry) for entry in self)
        return _inputs_from_columns, (
            shapes,
            [entry[0] for entry in self],
            [entry[1] for entry in self],
            *_envelope_columns(envelopes),
            [e.payload for e in envelopes],
            [e.raw_base64 for e in envelopes],
            [e.problem for e in envelopes],
        )


def _envelope_columns(envelopes: list[Envelope]) -> tuple[list[Any], ...]:
    """The fields every envelope crossing as columns carries: topic, position, raw, time."""
    return (
        [e.topic for e in envelopes],
        [e.position for e in envelopes],
        [e.raw for e in envelopes],
        [e.received_at for e in envelopes],
    )


def _inputs_from_columns(
    shapes: bytes, tags: list[int], seqs: list[int], *fields: list[Any]
) -> InputEntries:
    envelopes = iter([Envelope(*values) for values in zip(*fields, strict=True)])
    return InputEntries(
        (tag, seq, next(envelopes)) if shape == 3 else (tag, seq)
        for shape, tag, seq in zip(shapes, tags, seqs, strict=True)
    )


class RoutedEntries(list):  # type: ignore[type-arg]
    """What a route bucket sends an order bucket: ``(seq, account_id, routed)`` entries.

    It crosses processes as columns of the readings' fields; the few other messages
    (account events, payments, relay results) travel packed one by one, in their places.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return RoutedEntries, (), _routed_columns(self, 2)

    def __setstate__(self, columns: tuple[Any, ...]) -> None:
        self.extend(_from_routed_columns(columns, 2))


class AccountEntries(list):  # type: ignore[type-arg]
    """What reaches an accounts key: ``(account_id, routed)`` pairs in input order.

    It crosses processes as ``RoutedEntries`` do.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return AccountEntries, (), _routed_columns(self, 1)

    def __setstate__(self, columns: tuple[Any, ...]) -> None:
        self.extend(_from_routed_columns(columns, 1))


def _routed_columns(entries: list[tuple[Any, ...]], at: int) -> tuple[Any, ...]:
    """Entries whose field ``at`` is a ``Routed``, as columns (a pickled list's state)."""
    readings = [e for e in entries if type(e[at].message) is Reading]
    others = [(i, e) for i, e in enumerate(entries) if type(e[at].message) is not Reading]
    items = [e[at] for e in readings]
    envelopes = [r.envelope for r in items]
    messages = [r.message for r in items]
    return (
        others,
        [e[:at] for e in readings],
        *_envelope_columns(envelopes),
        [e.raw_base64 for e in envelopes],
        [r.verdict for r in items],
        [m.meter_id for m in messages],
        [m.ts for m in messages],
        [m.milli for m in messages],
        [m.source for m in messages],
    )


def _from_routed_columns(columns: tuple[Any, ...], at: int) -> list[tuple[Any, ...]]:
    others, heads, *fields = columns
    entries = routed_readings(heads, fields)
    for index, entry in others:  # in ascending places, so each lands where it was
        entries.insert(index, entry)
    return entries


copyreg.pickle(Envelope, _reduce_envelope)
copyreg.pickle(Routed, _reduce_routed)
