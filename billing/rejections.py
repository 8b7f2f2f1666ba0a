"""Rejections as values: why a message is refused, and the outputs that record it (SPEC S9)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.emitter import Emitter, rejection
from billing.messages import Envelope
from billing.outputs import Output


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused message: the reason of S9/S14 and a readable detail."""

    reason: str
    detail: str


class Rejected(list[Output]):
    """The outputs that record one refused input: its ``rejected`` row and its DLQ message.

    It is a list, so it flows on with every other output; ``reason`` tells the flow why
    without reading the rows back.
    """

    def __init__(self, outputs: list[Output], reason: str) -> None:
        super().__init__(outputs)
        self.reason = reason


def reject(envelope: Envelope, why: Rejection) -> Rejected:
    """The outputs that record ``envelope`` as refused for ``why``."""
    out = Emitter()
    rejection(
        out,
        topic=envelope.topic,
        position=envelope.position,
        key=envelope.key,
        payload=envelope.raw,
        payload_base64=envelope.raw_base64,
        reason=why.reason,
        detail=why.detail,
        received_at=envelope.received_at,
    )
    return Rejected(out.outputs, why.reason)


class Ignored(list[Output]):
    """An input applied with no effect and nothing to record: a relay result for no command.

    S14.16: results are facts of the meter; one for an unknown command is not refused.
    """
