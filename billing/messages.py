"""Input messages (SPEC S2) parsed into typed values, or rejected as ``malformed`` (S9, S14.2)."""

from __future__ import annotations

import base64
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.clock import TimestampError, epoch_us, parse_ts
from billing.contacts import CONTACT_FIELDS
from billing.decoding import decode_json
from billing.excerpt import excerpt
from billing.numbers import (
    ENERGY_LIMIT,
    MONEY_LIMIT,
    PLAIN_ENERGY,
    DecimalFormatError,
    check_points,
    decimal_places,
    parse_decimal_text,
    to_milli,
)
from billing.rules import CHANNELS, BillingRules
from billing.state_pickle import constructor_reduce

READINGS, PAYMENTS, ACCOUNTS = "readings", "payments", "accounts"
COMMAND_RESULTS = "meter-command-results"
TOPIC_ORDER = {ACCOUNTS: 0, PAYMENTS: 1, READINGS: 2, COMMAND_RESULTS: 3}
"""Ties in timestamp order (S14.1); a relay outcome follows the command it reports on."""
METER_KEYED = frozenset({READINGS, COMMAND_RESULTS})
"""Input topics keyed (and routed) by meter id; the others are keyed by account id."""


@dataclass(slots=True, init=False)  # per message; not frozen; init=False: billing/__init__.py
class Envelope:
    """One input message as it arrived: its topic, a unique source position and its bytes.

    ``raw`` keeps the original bytes losslessly: their text when they are valid UTF-8, else
    their base64 with ``raw_base64`` set. ``payload`` is the decoded JSON, or None with
    ``problem`` saying why it could not be decoded.
    """

    topic: str
    position: str
    raw: str
    received_at: datetime
    payload: Any
    raw_base64: bool
    problem: str

    def __init__(  # noqa: PLR0913 - the envelope's fields
        self,
        topic: str,
        position: str,
        raw: str,
        received_at: datetime,
        payload: Any = None,  # noqa: ANN401 - any JSON value
        raw_base64: bool = False,  # noqa: FBT001, FBT002 - positional, as every caller passes it
        problem: str = "",
    ) -> None:
        self.topic = topic
        self.position = position
        self.raw = raw
        self.received_at = received_at
        self.payload = payload
        self.raw_base64 = raw_base64
        self.problem = problem

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments

    @staticmethod
    def decode(topic: str, position: str, raw: bytes | str, received_at: datetime) -> Envelope:
        """Wrap raw input bytes (or text), decoding its JSON; never raises on any input."""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            encoded = base64.b64encode(data).decode("ascii")
            problem = f"not valid UTF-8 (byte {err.start})"
            return Envelope(topic, position, encoded, received_at, None, True, problem)
        payload, problem = decode_json(text)
        return Envelope(topic, position, text, received_at, payload, False, problem)

    def at(self, received_at: datetime) -> Envelope:
        """The same envelope received at another time."""
        return Envelope(
            self.topic,
            self.position,
            self.raw,
            received_at,
            self.payload,
            self.raw_base64,
            self.problem,
        )

    @property
    def key(self) -> str:
        """The message key: meter id for readings and command results, else account id ('')."""
        if isinstance(self.payload, dict):
            value = self.payload.get("meter_id" if self.topic in METER_KEYED else "account_id")
            if isinstance(value, str):
                return value
        return ""


def message_ts(envelope: Envelope) -> datetime | None:
    """The timestamp an input message is ordered by, or None when it has no valid one."""
    if isinstance(envelope.payload, dict):
        try:
            return parse_ts(envelope.payload.get("ts"))
        except TimestampError:
            return None
    return None


class Malformed(ValueError):
    """The message is not well formed; ``str(err)`` says why."""


@dataclass(slots=True, init=False)  # per reading; not frozen; init=False: billing/__init__.py
class Reading:
    """A cumulative register reading."""

    meter_id: str
    ts: datetime
    milli: int
    """The register in thousandths of a kWh, read straight from its decimal text."""
    source: str
    us: int = field(init=False, repr=False, compare=False)
    """``ts`` in µs since the epoch, worked out once: the checks compare instants as ints."""

    def __init__(self, meter_id: str, ts: datetime, milli: int, source: str = "") -> None:
        self.meter_id = meter_id
        self.ts = ts
        self.milli = milli
        self.source = source
        self.us = epoch_us(ts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


@dataclass(frozen=True, slots=True)
class TopUp:
    """A prepaid top-up."""

    payment_id: str
    account_id: str
    amount: Decimal
    channel: str
    ts: datetime
    request_id: str | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


@dataclass(frozen=True, slots=True)
class Redeem:
    """A points redemption."""

    payment_id: str
    account_id: str
    points: int
    ts: datetime

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """An account lifecycle event; ``fields`` holds the validated optional fields."""

    kind: str
    account_id: str
    ts: datetime
    meter_id: str = ""
    plan: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A relay outcome from the command executor (S2, S13): ``ok``, or why it failed."""

    command_id: str
    meter_id: str
    ok: bool
    ts: datetime
    error: str = ""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


Message = Reading | TopUp | Redeem | AccountEvent | CommandResult


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{name} must be a non-empty string")
    return value


def _ts(payload: dict[str, Any], rules: BillingRules) -> datetime:
    try:
        return parse_ts(payload.get("ts"), rules.zone)
    except TimestampError as err:
        raise Malformed(f"ts: {err}") from err


def _decimal(payload: dict[str, Any], name: str, limit: Decimal = MONEY_LIMIT) -> Decimal:
    try:
        return parse_decimal_text(payload.get(name), limit)
    except DecimalFormatError as err:
        raise Malformed(f"{name}: {err}") from err


def _energy(payload: dict[str, Any], name: str) -> Decimal:
    text = payload.get(name)
    if type(text) is str and PLAIN_ENERGY.fullmatch(text):
        return Decimal(text)  # the usual register text, valid by its shape alone
    value = _decimal(payload, name, ENERGY_LIMIT)
    if value < 0 or decimal_places(value) > 3:
        raise Malformed(f"{name} must be ≥ 0 with at most 3 decimals")
    return value


def _energy_milli(payload: dict[str, Any], name: str) -> int:
    """An energy field in thousandths of a kWh, as `_energy` checks it."""
    text = payload.get(name)
    if type(text) is str and PLAIN_ENERGY.fullmatch(text):
        return _plain_milli(text)
    return to_milli(_energy(payload, name))


def _plain_milli(text: str) -> int:
    """A ``PLAIN_ENERGY`` text (digits, at most 3 decimals) in thousandths of a kWh."""
    whole, _, decimals = text.partition(".")
    return int(whole) * 1000 + int(decimals.ljust(3, "0")) if decimals else int(whole) * 1000


def _money(payload: dict[str, Any], name: str) -> Decimal:
    value = _decimal(payload, name)
    if decimal_places(value) > 2:
        raise Malformed(f"{name} must have at most 2 decimals")
    return value


def _plan(payload: dict[str, Any], rules: BillingRules) -> str:
    plan = _text(payload, "plan")
    if plan not in rules.plans:
        raise Malformed(f"unknown plan {excerpt(plan)}")
    return sys.intern(plan)  # a known id: one string for every account on the plan


def parse_message(envelope: Envelope, rules: BillingRules) -> Message:
    """Parse an envelope's payload into a typed message or raise ``Malformed``."""
    payload = envelope.payload
    if not isinstance(payload, dict):
        raise Malformed(envelope.problem or "not a JSON object")
    if envelope.topic == READINGS:
        return _reading(payload, rules)
    if envelope.topic == PAYMENTS:
        return _payment(payload, rules)
    if envelope.topic == ACCOUNTS:
        return _account_event(payload, rules)
    if envelope.topic == COMMAND_RESULTS:
        return _command_result(payload, rules)
    raise Malformed(f"unknown topic {excerpt(envelope.topic)}")


def _reading(payload: dict[str, Any], rules: BillingRules) -> Reading:
    meter_id = _text(payload, "meter_id")
    ts = _ts(payload, rules)
    milli = _energy_milli(payload, "energy_kwh")
    if "power_w" in payload and payload["power_w"] is not None:
        _decimal(payload, "power_w", ENERGY_LIMIT)
    source = payload.get("source", "")
    if not isinstance(source, str):
        raise Malformed("source must be a string")
    return Reading(meter_id, ts, milli, source)


# The usual reading line, byte for byte as meters and collectors write it: printable ASCII
# without escapes (``_VISIBLE``: no blank, quote or backslash), a meter id with no blank, the
# plain register text (``PLAIN_ENERGY``), then an optional source and an optional power of
# that plain shape too (valid below its limit). JSON decodes it to exactly these strings.
_VISIBLE = rb"!#-\[\]-~"
_PLAIN = PLAIN_ENERGY.pattern.encode("ascii")
_READING_LINE = re.compile(
    rb'\{"meter_id": "(?P<meter>[' + _VISIBLE + rb']{1,64})", "ts": "(?P<ts>[-+.:0-9TZ]{16,40})", '
    rb'"energy_kwh": "(?P<energy>' + _PLAIN + rb')"'
    rb'(?:, "source": "(?P<source>[ ' + _VISIBLE + rb']{0,64})")?'
    rb'(?:, "power_w": "(?P<power>' + _PLAIN + rb')")?\}'
)


_READING_TEXT = re.compile(_READING_LINE.pattern.decode("ascii"))
"""The same line as text (an ASCII line decoded): its groups are the strings themselves."""


def reading_line(line: bytes, rules: BillingRules) -> tuple[dict[str, Any], Reading] | None:
    """The payload and reading of a usual reading line, parsed straight from its bytes.

    The same payload ``Envelope.decode`` and the same reading ``parse_message`` give; None
    for any other line, which the general path then decodes and parses.
    """
    match = _READING_LINE.fullmatch(line)
    if match is None:
        return None
    source, power = match["source"], match["power"]
    return _usual_reading(
        match["meter"].decode("ascii"),
        match["ts"].decode("ascii"),
        match["energy"].decode("ascii"),
        None if source is None else source.decode("ascii"),
        None if power is None else power.decode("ascii"),
        rules,
    )


def reading_text(line: str, rules: BillingRules) -> tuple[dict[str, Any], Reading] | None:
    """``reading_line`` of a line already decoded from ASCII bytes (the same shape and result)."""
    match = _READING_TEXT.fullmatch(line)
    if match is None:
        return None
    return matched_reading(match, rules)


def reading_match(line: str) -> re.Match[str] | None:
    """The fields of a usual reading line (text), or None: ``reading_text`` reads them from it.

    Its ``meter`` and ``ts`` groups are the meter id and the timestamp's text as they are.
    """
    return _READING_TEXT.fullmatch(line)


def matched_reading(
    match: re.Match[str], rules: BillingRules, moment: datetime | None = None
) -> tuple[dict[str, Any], Reading] | None:
    """``reading_text`` of the line ``reading_match`` matched.

    ``moment``: its timestamp already parsed in ``rules.zone``.
    """
    meter_id, ts, energy, source, power = match.group("meter", "ts", "energy", "source", "power")
    return _usual_reading(meter_id, ts, energy, source, power, rules, moment)


def _usual_reading(  # noqa: PLR0913 - the fields of the usual line
    meter_id: str,
    ts: str,
    energy: str,
    source: str | None,
    power: str | None,
    rules: BillingRules,
    moment: datetime | None = None,
) -> tuple[dict[str, Any], Reading] | None:
    if moment is None:
        try:
            moment = parse_ts(ts, rules.zone)
        except TimestampError:
            return None  # refused by the general path, with its reason
    payload: dict[str, Any] = {"meter_id": meter_id, "ts": ts, "energy_kwh": energy}
    if source is not None:
        payload["source"] = source
    if power is not None:
        payload["power_w"] = power
    return payload, Reading(meter_id, moment, _plain_milli(energy), source or "")


def _command_result(payload: dict[str, Any], rules: BillingRules) -> CommandResult:
    command_id = _text(payload, "command_id")
    meter_id = _text(payload, "meter_id")
    ok = payload.get("ok")
    if not isinstance(ok, bool):
        raise Malformed("ok must be true or false")
    ts = _ts(payload, rules)
    error = payload.get("error")
    if error is not None and not isinstance(error, str):
        raise Malformed("error must be a string")
    return CommandResult(command_id, meter_id, ok, ts, error or "")


def _payment(payload: dict[str, Any], rules: BillingRules) -> TopUp | Redeem:
    kind = payload.get("type")
    if kind == "topup":
        payment_id = _text(payload, "payment_id")
        account_id = _text(payload, "account_id")
        amount = _decimal(payload, "amount")
        channel = payload.get("channel")
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise Malformed(f"unknown channel {excerpt(channel)}")
        ts = _ts(payload, rules)
        request_id = payload.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise Malformed("request_id must be a string")
        return TopUp(payment_id, account_id, amount, str(channel), ts, request_id)
    if kind == "redeem":
        payment_id = _text(payload, "payment_id")
        account_id = _text(payload, "account_id")
        points = payload.get("points")
        if not isinstance(points, int) or isinstance(points, bool):
            raise Malformed("points must be a JSON integer")
        try:
            check_points(points)
        except DecimalFormatError as err:
            raise Malformed(f"points: {err}") from err
        return Redeem(payment_id, account_id, points, _ts(payload, rules))
    raise Malformed(f"unknown payment type {excerpt(kind)}")


ACCOUNT_EVENTS = frozenset({"open", "change_plan", "replace_meter", "update", "close"})


def _account_event(payload: dict[str, Any], rules: BillingRules) -> AccountEvent:
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in ACCOUNT_EVENTS:
        raise Malformed(f"unknown account event type {excerpt(kind)}")
    account_id = _text(payload, "account_id")
    ts = _ts(payload, rules)
    fields: dict[str, Any] = {}
    if kind == "open":
        meter_id = _text(payload, "meter_id")
        plan = _plan(payload, rules)
        fields["opening_balance"] = (
            _money(payload, "opening_balance") if "opening_balance" in payload else Decimal("0.00")
        )
        fields["ytd_kwh"] = _energy(payload, "ytd_kwh") if "ytd_kwh" in payload else Decimal(0)
        _optional_settings(payload, fields)
        for name in ("district", "landlord_id"):
            if payload.get(name) is not None:
                fields[name] = _text(payload, name)
        return AccountEvent("open", account_id, ts, meter_id, plan, fields)
    if kind == "change_plan":
        return AccountEvent("change_plan", account_id, ts, plan=_plan(payload, rules))
    if kind == "replace_meter":
        fields["old_meter_id"] = _text(payload, "old_meter_id")
        fields["old_final_kwh"] = _energy(payload, "old_final_kwh")
        fields["new_initial_kwh"] = _energy(payload, "new_initial_kwh")
        new_meter = _text(payload, "new_meter_id")
        return AccountEvent("replace_meter", account_id, ts, new_meter, fields=fields)
    if kind == "update":
        _optional_settings(payload, fields)
        return AccountEvent("update", account_id, ts, fields=fields)
    if payload.get("final_kwh") is not None:
        fields["final_kwh"] = _energy(payload, "final_kwh")
    return AccountEvent("close", account_id, ts, fields=fields)


def _optional_settings(payload: dict[str, Any], fields: dict[str, Any]) -> None:
    """Threshold, auto top-up amount (null turns it off), phone, e-mail and locale."""
    if payload.get("low_balance_threshold") is not None:
        fields["low_balance_threshold"] = _money(payload, "low_balance_threshold")
    if "auto_topup_amount" in payload:
        if payload["auto_topup_amount"] is None:
            fields["auto_topup_amount"] = None
        else:
            fields["auto_topup_amount"] = _money(payload, "auto_topup_amount")  # > 0: S14.2
    for name in CONTACT_FIELDS:
        if payload.get(name) is not None:
            fields[name] = _text(payload, name)
