"""What crosses workers in the billing flow: plain tuples of strings, ints and timestamps.

Bytewax pickles every item that moves to another process. Pickling a frozen dataclass
(an ``Envelope``, a ``Routed`` holding an envelope and a message) costs several times a
tuple of the same fields, so they pickle as those tuples (see BENCHMARKS.md "Exchange"):
importing this module registers the packers below with ``copyreg``. Inside one process
the objects pass as they are, packed by nobody. Amounts travel as the text of their
Decimal, which gives back the very same Decimal (digits and exponent).
"""

from __future__ import annotations

import copyreg
from decimal import Decimal
from typing import Any

from billing.engine import Routed
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
        return (_READING, message.meter_id, message.ts, str(message.energy), message.source)
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
        return Reading(packed[1], packed[2], Decimal(packed[3]), packed[4])
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


copyreg.pickle(Envelope, _reduce_envelope)
copyreg.pickle(Routed, _reduce_routed)
PICKLED_AS_TUPLES = (Envelope, Routed)
"""The classes registered above: import this name where they are sent to other workers."""
