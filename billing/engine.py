"""Routing a message to its account and applying it there: the billing flow's two steps.

Each rule lives in its own module (readings, payments, lifecycle, days, rating, points,
rebates, alerts, cuts); this one only dispatches. A refusal is a value all the way: the
rules return a ``Rejection`` and ``apply`` says applied or rejected.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from billing.account_events import record_account_event
from billing.clock import ts_text
from billing.days import close_day
from billing.directory import MeterDirectory
from billing.emitter import Emitter
from billing.follow_up import follow_status
from billing.lifecycle import apply_account_event
from billing.merge import Merged, ReadingLine, line_input
from billing.messages import (
    AccountEvent,
    CommandResult,
    Envelope,
    Malformed,
    Message,
    Reading,
    Redeem,
    TopUp,
    parse_message,
)
from billing.notices import cause_of
from billing.numbers import packed_milli
from billing.outputs import Output, ScaledRows
from billing.payments import apply_redeem, apply_topup, claim_payment_id
from billing.readings import apply_reading
from billing.rejections import Ignored, Rejected, Rejection, reject
from billing.rules import BillingRules
from billing.state import CLOSED, AccountState, account_row
from billing.state_pickle import constructor_reduce
from billing.tamper import apply_command_result


@dataclass(slots=True, init=False)  # per message; not frozen; init=False: billing/__init__.py
class Routed:
    """A parsed message on its way to its account; ``verdict`` is the lifecycle check result."""

    envelope: Envelope
    message: Message
    verdict: str | None

    def __init__(self, envelope: Envelope, message: Message, verdict: str | None = None) -> None:
        self.envelope = envelope
        self.message = message
        self.verdict = verdict

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


@dataclass(slots=True, init=False)  # per message; not frozen; init=False: billing/__init__.py
class Outcome:
    """What applying one message did to its account.

    ``rejection`` is None when the message was applied. A refused message's outputs end
    with its ``rejected`` row and DLQ message; a ``meter_anomaly`` raised before stays.
    """

    state: AccountState | None
    outputs: list[Output]
    rejection: Rejection | None

    def __init__(
        self,
        state: AccountState | None,
        outputs: list[Output],
        rejection: Rejection | None = None,
    ) -> None:
        self.state = state
        self.outputs = outputs
        self.rejection = rejection

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


def routed_readings(heads: list[tuple[Any, ...]], fields: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Routed readings made again from their fields' columns, each after its ``head``.

    ``fields``: topic, position, raw, received_at, raw_base64, verdict, meter_id, ts,
    register (0.001 kWh; the text of a Decimal in what older snapshots hold). The envelope
    keeps only the meter id of its payload: on the account side a refusal names its key
    and nothing else. What a batch of readings becomes after crossing processes
    (``pipelines.wire``), made in one compiled loop.
    """
    topics, positions, raws, received, base64s, verdicts, meters, stamps, registers, sources = (
        fields
    )
    entries: list[tuple[Any, ...]] = []
    for index, head in enumerate(heads):
        meter_id = meters[index]
        envelope = Envelope(
            topics[index],
            positions[index],
            raws[index],
            received[index],
            {"meter_id": meter_id},
            base64s[index],
        )
        reading = Reading(meter_id, stamps[index], packed_milli(registers[index]), sources[index])
        entries.append((*head, Routed(envelope, reading, verdicts[index])))
    return entries


def route(
    envelope: Envelope,
    directory: MeterDirectory,
    rules: BillingRules,
    parsed: Message | None = None,
) -> tuple[str, Routed] | Rejected | Ignored:
    """Parse a message and find its account; return (account_id, routed) or the rejection.

    A relay result for a meter that no account owns is ``Ignored``. ``parsed`` is the
    message when it was parsed straight from its bytes (``billing.messages.reading_line``).
    """
    message = parse_input(envelope, rules, parsed)
    if isinstance(message, Rejected):
        return message
    if isinstance(message, Reading):
        return route_reading(envelope, message, directory.owner_at(message.meter_id, message.ts))
    if isinstance(message, CommandResult):
        owner = directory.owner_at(message.meter_id, message.ts)
        return route_command_result(envelope, message, owner)
    if isinstance(message, AccountEvent):
        return message.account_id, Routed(envelope, message, directory.check(message))
    is_open = directory.is_open(message.account_id)
    return route_payment(envelope, message, directory.payment_ids, is_open, rules)


def route_all(  # noqa: PLR0913 - the chunk, the routing state and what is kept
    inputs: list[Merged],
    directory: MeterDirectory,
    rules: BillingRules,
    key_of: Callable[[str], str],
    new_batch: Callable[[], list[tuple[str, Routed]]],
    share: Share | None = None,
) -> tuple[dict[str, list[tuple[str, Routed]]], list[Output]]:
    """Route a chunk in input order: ``(account_id, routed)`` per key, and the refusals' outputs.

    A loop around ``route``; ``key_of`` names an account's key, ``new_batch`` makes a
    key's list. A relay result for no account's meter is dropped (``Ignored``).

    With ``share`` (a process of a cluster where every process reads the input), every line
    is routed, so every process keeps the same routing state, but only this process's share
    is kept: what goes to its keys, and the refusals when it is the ``designated`` one. A
    ``ReadingLine`` goes to the owner of its meter at its timestamp (the same lookup
    ``route`` makes), so only the process that bills it makes its envelope and reading, and
    whatever becomes of it there is kept.
    """
    keyed: dict[str, list[tuple[str, Routed]]] = {}
    refused: list[Output] = []
    for item in inputs:
        if isinstance(item, ReadingLine):
            owner = directory.owner_at(item.meter_id, item.ts)
            if share is not None and not share.bills(owner, key_of):
                continue
            envelope, line_reading = line_input(item, rules)
            # What ``route`` does with a reading, its owner found above.
            message = parse_input(envelope, rules, line_reading)
            if isinstance(message, Rejected):
                routed: tuple[str, Routed] | Rejected | Ignored = message
            else:
                routed = route_reading(envelope, line_reading, owner)
            keep = True
        else:
            envelope, reading = item
            routed = route(envelope, directory, rules, reading)
            keep = share is None
        if isinstance(routed, tuple):
            key = key_of(routed[0])
            if keep or key in share.keys:  # type: ignore[union-attr]
                entries = keyed.get(key)
                if entries is None:
                    entries = keyed[key] = new_batch()
                entries.append(routed)
        elif isinstance(routed, Rejected):
            if keep or share.designated:  # type: ignore[union-attr]
                refused.extend(routed)
    return keyed, refused


class Share:
    """The accounts keys a process of a cluster bills, and whether it emits the refusals."""

    keys: frozenset[str]
    designated: bool
    _owners: dict[str, bool]

    def __init__(self, keys: frozenset[str], designated: bool) -> None:  # noqa: FBT001
        self.keys = keys
        self.designated = designated
        self._owners = {}  # whether an account's key is one of ``keys``, once looked up

    def bills(self, owner: str | None, key_of: Callable[[str], str]) -> bool:
        """True when this process routes a reading of ``owner`` (None: refused, designated)."""
        if owner is None:
            return self.designated
        mine = self._owners.get(owner)
        if mine is None:
            mine = self._owners[owner] = key_of(owner) in self.keys
        return mine


def parse_input(
    envelope: Envelope, rules: BillingRules, parsed: Message | None = None
) -> Message | Rejected:
    """The message an envelope holds, or its rejection (malformed; from the future, live).

    ``parsed`` is the message when it was already parsed from the envelope's bytes.
    """
    if parsed is None:
        try:
            message = parse_message(envelope, rules)
        except Malformed as err:
            return reject(envelope, Rejection("malformed", str(err)))
    else:
        message = parsed
    if rules.reject_future and message.ts > envelope.received_at + rules.future_tolerance:
        # Live mode: received_at is the wall clock at arrival.
        return reject(envelope, Rejection("future", f"{ts_text(message.ts)} is ahead of the clock"))
    return message


def route_reading(
    envelope: Envelope, reading: Reading, owner: str | None
) -> tuple[str, Routed] | Rejected:
    """A reading goes to the account that owned its meter at its timestamp (S14.3)."""
    if owner is None:
        why = Rejection("unknown_meter", f"no open account owns {reading.meter_id}")
        return reject(envelope, why)
    return owner, Routed(envelope, reading)


def route_command_result(
    envelope: Envelope, result: CommandResult, owner: str | None
) -> tuple[str, Routed] | Ignored:
    """A relay result goes to the account owning its meter at its ts; with none, it is ignored."""
    if owner is None:
        return Ignored()
    return owner, Routed(envelope, result)


def route_payment(
    envelope: Envelope,
    payment: TopUp | Redeem,
    claims: MutableMapping[str, tuple[str, bool]],
    is_open: bool,
    rules: BillingRules,
) -> tuple[str, Routed] | Rejected:
    """A payment goes to its account once its id is claimed (S14.4); a repeat is refused."""
    duplicate = claim_payment_id(claims, is_open, payment, rules)
    if duplicate is not None:
        return reject(envelope, duplicate)
    return payment.account_id, Routed(envelope, payment)


def apply(
    state: AccountState | None,
    item: Routed,
    rules: BillingRules,
    scaled_rows: dict[str, list[tuple[Any, ...]]] | None = None,
) -> Outcome:
    """Apply a message to an account: its new state, everything it emits, applied or not.

    With ``scaled_rows``, the rows of ``SCALED_COLUMNS`` tables go there (`Emitter.scaled`).
    """
    out = Emitter(scaled_rows)
    message = item.message
    result: AccountState | Rejection
    if isinstance(message, Reading):
        result = apply_reading(state, message, out, rules)
    elif isinstance(message, TopUp):
        result = apply_topup(state, message, out, rules)
    elif isinstance(message, Redeem):
        result = apply_redeem(state, message, out, rules)
    elif isinstance(message, CommandResult):
        if state is not None:  # results never move money, so no follow-up (S14.16)
            apply_command_result(state, message, out, cause_of(message))
        return Outcome(state, out.outputs)
    else:
        result = apply_account_event(state, message, item.verdict, out, rules)
    if isinstance(result, Rejection):
        return Outcome(state, out.outputs + reject(item.envelope, result), result)
    if isinstance(message, AccountEvent):
        record_account_event(result, message, out)
    return Outcome(result, out.outputs)


def apply_all(
    states: dict[str, AccountState],
    batch: list[tuple[str, Routed]],
    rules: BillingRules,
    counts: dict[tuple[str, str | None], int] | None = None,
    scaled_rows: bool = False,
) -> list[Output]:
    """Apply a batch to the accounts of ``states`` in input order; return every output.

    A loop around ``apply``, one message at a time; ``states`` is updated in place (an
    account whose state ends is removed). With ``counts``, every message is counted by
    its topic and its rejection's reason (None when it was applied). With
    ``scaled_rows``, the batch's readings and intervals rows come last, as one
    `ScaledRows` (for the column encoders: no row object per reading).
    """
    outputs: list[Output] = []
    tables: dict[str, list[tuple[Any, ...]]] | None = {} if scaled_rows else None
    for account_id, item in batch:
        outcome = apply(states.get(account_id), item, rules, tables)
        if outcome.state is None:
            states.pop(account_id, None)
        else:
            states[account_id] = outcome.state
        outputs += outcome.outputs
        if counts is not None:
            rejection = outcome.rejection
            key = (item.envelope.topic, None if rejection is None else rejection.reason)
            counts[key] = counts.get(key, 0) + 1
    if tables:
        outputs.append(ScaledRows(tables))
    return outputs


def finish(state: AccountState, rules: BillingRules) -> list[Output]:
    """End of a replay: close the one open day of an account that is not closed (S14.8)."""
    out = Emitter()
    if state.status != CLOSED:
        day_end = state.day.end
        close_day(state, out, rules, day_end)
        follow_status(state, state.available_units)
        account_row(state, out, day_end)
    return out.outputs
