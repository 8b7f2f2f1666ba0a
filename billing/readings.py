"""Meter readings: the S14.3 checks in order, charging an accepted one, final readings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from billing.clock import epoch_us, ts_text
from billing.days import close_days_until
from billing.emitter import Emitter
from billing.follow_up import follow_up
from billing.messages import Reading
from billing.notices import cause_of, notify
from billing.numbers import from_milli, kwh_text, to_milli
from billing.rating import rate_span
from billing.reading_log import ReadingLog
from billing.rejections import Rejection
from billing.rules import BillingRules
from billing.state import CLOSED, AccountState
from billing.state_pickle import constructor_reduce
from billing.tamper import is_tamper

US_PER_HOUR = 3_600_000_000
METER_REGRESSION, IMPLAUSIBLE_JUMP = "meter_regression", "implausible_jump"
ANOMALIES = (METER_REGRESSION, IMPLAUSIBLE_JUMP)
"""Rejections that also raise ``meter_anomaly``."""


@dataclass(slots=True, init=False)  # per message; not frozen; init=False: billing/__init__.py
class Accepted:
    """A reading that passed every check; ``since`` is None for the uncharged baseline.

    Otherwise ``delta`` (0.001 kWh, a rollover already unwrapped) was used since ``since``.
    """

    milli: int
    since: datetime | None
    delta: int

    def __init__(self, milli: int, since: datetime | None = None, delta: int = 0) -> None:
        self.milli = milli
        self.since = since
        self.delta = delta

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, it cannot be made without its arguments


def too_fast(milli: int, elapsed: int, rules: BillingRules) -> bool:
    """Mean power of ``milli`` over ``elapsed`` µs above ``max_power_kw`` (exact, as ints)."""
    kw, per = _ratio(rules.max_power_kw)  # max_power_kw = kw / per
    return milli * US_PER_HOUR * per > kw * 1000 * elapsed


@lru_cache(maxsize=16)
def _ratio(value: Decimal) -> tuple[int, int]:
    return value.as_integer_ratio()


def check_reading(
    state: AccountState | None, r: Reading, rules: BillingRules
) -> Accepted | Rejection:
    """SPEC S14.3 in order; the first check that fails is the reason.

    ``malformed`` and ``unknown_meter`` by ownership are decided when the message is routed;
    ``state`` is None when the owner has no state (``unknown_meter`` again). Then:
    duplicate / conflict → out_of_order → regression or rollover → implausible_jump.
    """
    if state is None:
        return Rejection("unknown_meter", f"no open account owns {r.meter_id} at {ts_text(r.ts)}")
    milli = r.milli
    log = state.logs.get(r.meter_id)
    known = log.energy_at(r.us) if log is not None else None
    if known is not None:
        return Rejection(
            "duplicate" if known == milli else "conflict",
            f"a reading at {ts_text(r.ts)} was accepted with {kwh_text(from_milli(known))} kWh",
        )
    if state.status == CLOSED or r.meter_id != state.meter_id:
        # The account owned this meter at r.ts, but its series has since ended
        # (replacement or move-out): the reading is older than the series' last value.
        return Rejection("out_of_order", f"{r.meter_id}'s series ended before this reading arrived")
    if state.baseline is None:
        return Accepted(milli)
    start, previous = state.baseline
    if r.ts <= start:
        return Rejection(
            "out_of_order", f"older than the latest accepted reading at {ts_text(start)}"
        )
    delta = milli - previous
    elapsed = r.us - epoch_us(start)
    if delta < 0:
        delta += to_milli(rules.register_max_kwh)  # a rollover, if it passes the jump check
        if too_fast(delta, elapsed, rules):
            return Rejection(METER_REGRESSION, "register went backwards; rebased without charge")
    elif too_fast(delta, elapsed, rules):
        return Rejection(IMPLAUSIBLE_JUMP, f"mean power above {rules.max_power_kw} kW")
    return Accepted(milli, start, delta)


def apply_reading(
    state: AccountState | None, r: Reading, out: Emitter, rules: BillingRules
) -> AccountState | Rejection:
    """Check a reading; charge its consumption, or return why it is refused.

    A regression becomes the new baseline; it and a jump raise ``meter_anomaly``, which
    stays among the outputs of the refused reading.
    """
    verdict = check_reading(state, r, rules)
    if isinstance(verdict, Rejection):
        if verdict.reason in ANOMALIES and state is not None and state.baseline is not None:
            _anomaly(state, out, r, verdict.reason, state.baseline[1])
            if verdict.reason == METER_REGRESSION:
                state.baseline = (r.ts, r.milli)  # rebased, nothing charged
        return verdict
    assert state is not None  # a state-less reading is always refused
    before = state.available_units
    day = state.day.day
    cause = r  # its text only if a notification or command needs it
    record_reading(state, out, r.meter_id, r.ts, r.milli, r.source)
    if verdict.since is not None:
        rate_span(state, out, rules, verdict.since, r.ts, verdict.delta)
    close_days_until(state, out, rules, r.ts)
    remember(state, r.ts, verdict.milli, rules, r.us)
    if is_tamper(state, verdict.since, verdict.delta, rules):
        state.warned_consumption = True
        notify(
            state,
            out,
            "consumption_while_disconnected",
            ts=r.ts,
            cause=cause,
            data={"meter_id": r.meter_id, "kwh": kwh_text(from_milli(verdict.delta))},
        )
    follow_up(state, out, rules, before=before, ts=r.ts, cause=cause, always_row=False, day=day)
    return state


def final_reading(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    meter_id: str,
    ts: datetime,
    energy: Decimal | None,
) -> None:
    """Rate a final register value over [last accepted ts, ts) when later and not lower (S14.9)."""
    if energy is None or state.baseline is None:
        return
    start, previous = state.baseline
    milli = to_milli(energy)
    if ts > start and milli >= previous:
        record_reading(state, out, meter_id, ts, milli, "final")
        rate_span(state, out, rules, start, ts, milli - previous)
        remember(state, ts, milli, rules)


def remember(
    state: AccountState, ts: datetime, milli: int, rules: BillingRules, us: int | None = None
) -> None:
    """Make an accepted register value the baseline and keep it for duplicate checks.

    ``us`` is ``ts`` in µs since the epoch when the caller has it (``Reading.us``).
    """
    state.baseline = (ts, milli)
    log = state.logs.get(state.meter_id)
    if log is None:
        log = state.logs[state.meter_id] = ReadingLog(rules.duplicate_memory)
    log.add(epoch_us(ts) if us is None else us, milli)


def record_reading(
    state: AccountState, out: Emitter, meter_id: str, ts: datetime, milli: int, source: str
) -> None:
    """The ``readings`` row of a register value that was used (billing-rules #10)."""
    out.scaled("readings", (meter_id, state.account_id, ts, milli, source))


def _anomaly(state: AccountState, out: Emitter, r: Reading, reason: str, previous: int) -> None:
    notify(
        state,
        out,
        "meter_anomaly",
        ts=r.ts,
        cause=cause_of(r),
        data={
            "meter_id": r.meter_id,
            "reason": reason,
            "energy_kwh": kwh_text(from_milli(r.milli)),
            "previous_kwh": kwh_text(from_milli(previous)),
        },
    )
