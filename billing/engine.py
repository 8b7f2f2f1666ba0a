"""Applying one routed message to one account's state (the heart of the billing flow)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from billing.account import (
    CLOSED,
    DISCONNECTED,
    AccountState,
    close_day,
    close_days_until,
    new_account,
    notify,
    post_ledger,
    post_points,
    rate_span,
)
from billing.checks import balance_alerts, disconnection, follow_status, reconnection
from billing.clock import elapsed_us, ts_text
from billing.directory import MeterDirectory
from billing.messages import (
    AccountEvent,
    Envelope,
    Malformed,
    Message,
    Reading,
    Redeem,
    TopUp,
    parse_message,
)
from billing.numbers import decimal_places, from_milli, kwh_text, round_money, to_milli
from billing.outputs import Emitter, Output, money, rejection
from billing.reading_log import ReadingLog
from billing.rules import BillingRules

US_PER_HOUR = 3_600_000_000
CONSUMPTION_NOTICE_MILLI = 10  # Δ > 0.01 kWh while disconnected is worth a notice


@dataclass(frozen=True, slots=True)
class Routed:
    """A parsed message on its way to its account; ``verdict`` is the lifecycle check result."""

    envelope: Envelope
    message: Message
    verdict: str | None = None


class Rejected(Exception):  # noqa: N818 - a control-flow signal inside a handler
    """Raised inside a handler to reject the message with a reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


def cause_of(message: Message) -> str:
    """A stable identifier of the message that caused an output."""
    if isinstance(message, Reading):
        return f"{message.meter_id}@{ts_text(message.ts)}"
    if isinstance(message, TopUp | Redeem):
        return message.payment_id
    return f"{message.kind}@{ts_text(message.ts)}"


def reject(envelope: Envelope, reason: str, detail: str) -> list[Output]:
    """The outputs that record one rejected input."""
    out = Emitter()
    rejection(
        out,
        topic=envelope.topic,
        position=envelope.position,
        key=envelope.key,
        payload=envelope.raw,
        payload_base64=envelope.raw_base64,
        reason=reason,
        detail=detail,
        received_at=envelope.received_at,
    )
    return out.outputs


def route(
    envelope: Envelope, directory: MeterDirectory, rules: BillingRules
) -> tuple[str, Routed] | list[Output]:
    """Parse a message and find its account; return (account_id, routed) or the rejection."""
    try:
        message = parse_message(envelope, rules)
    except Malformed as err:
        return reject(envelope, "malformed", str(err))
    if rules.reject_future and message.ts > envelope.received_at + rules.future_tolerance:
        # Live mode: received_at is the wall clock at arrival.
        return reject(envelope, "future", f"{ts_text(message.ts)} is ahead of the clock")
    if isinstance(message, Reading):
        owner = directory.owner_at(message.meter_id, message.ts)
        if owner is None:
            return reject(envelope, "unknown_meter", f"no open account owns {message.meter_id}")
        return owner, Routed(envelope, message)
    if isinstance(message, AccountEvent):
        return message.account_id, Routed(envelope, message, directory.check(message))
    claim = directory.payment_ids.get(message.payment_id)
    if claim is not None and (claim[1] or claim[0] != message.account_id):
        return reject(
            envelope, "duplicate_payment", f"payment {message.payment_id} was already applied"
        )
    if directory.is_open(message.account_id):
        # Payment ids are one namespace across accounts, claimed here where every message
        # passes in order. A top-up that passes the lifecycle and amount checks is applied
        # for sure; a redemption may still be refused for insufficient points, so its claim
        # is tentative and its own account (which knows) decides a repeat (billing-rules #21).
        if isinstance(message, TopUp) and valid_topup_amount(message.amount, rules):
            directory.payment_ids[message.payment_id] = (message.account_id, True)
        elif isinstance(message, Redeem) and message.points >= 1 and claim is None:
            directory.payment_ids[message.payment_id] = (message.account_id, False)
    return message.account_id, Routed(envelope, message)


def apply(
    state: AccountState | None, item: Routed, rules: BillingRules
) -> tuple[AccountState | None, list[Output]]:
    """Apply a message to an account; return the new state and everything it emits."""
    out = Emitter()
    message = item.message
    try:
        if isinstance(message, Reading):
            state = _reading(state, message, out, rules)
        elif isinstance(message, TopUp):
            state = _topup(state, message, out, rules)
        elif isinstance(message, Redeem):
            state = _redeem(state, message, out, rules)
        else:
            state = _account_event(state, message, item.verdict, out, rules)
    except Rejected as rejected:
        # Anything emitted before the rejection (a meter anomaly) stays.
        return state, out.outputs + reject(item.envelope, rejected.reason, rejected.detail)
    return state, out.outputs


def finish(state: AccountState, rules: BillingRules) -> list[Output]:
    """End of a replay: close the one open day of an account that is not closed (S14.8)."""
    out = Emitter()
    if state.status != CLOSED:
        day_end = state.day.end
        close_day(state, out, rules, day_end)
        follow_status(state)
        account_row(state, out, day_end)
    return out.outputs


def account_row(state: AccountState, out: Emitter, ts: datetime) -> None:
    """The account's current state for the ``accounts`` table (latest version wins)."""
    state.version += 1
    out.row(
        "accounts",
        account_id=state.account_id,
        meter_id=state.meter_id,
        plan=state.plan_id,
        status=state.status,
        balance=round_money(state.balance),
        available=round_money(state.available),
        overdraft_limit=state.overdraft_limit,
        points=state.wallet.total,
        ytd_kwh=from_milli(state.ytd_milli),
        updated_at=ts,
        version=state.version,
    )


def _after(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    *,
    before: Decimal | None,
    ts: datetime,
    cause: str,
    always_row: bool,
    day: date | None = None,
) -> None:
    """Checks after an applied message, then the account row when anything visible changed.

    ``day`` is the open day before the message: a reading that closed days gets a row.
    """
    status = state.status
    if before is not None and state.available != before:
        balance_alerts(state, out, rules, ts, cause)
    disconnection(state, out, rules, ts, cause)
    follow_status(state)
    if always_row or state.status != status or (day is not None and state.day.day != day):
        account_row(state, out, ts)


def _too_fast(milli: int, start: datetime, end: datetime, rules: BillingRules) -> bool:
    """Mean power strictly above the limit (kW)."""
    return Decimal(milli * US_PER_HOUR) > rules.max_power_kw * 1000 * elapsed_us(start, end)


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
            "energy_kwh": kwh_text(r.energy),
            "previous_kwh": kwh_text(from_milli(previous)),
        },
    )


def _remember(state: AccountState, ts: datetime, milli: int, rules: BillingRules) -> None:
    state.baseline = (ts, milli)
    log = state.logs.get(state.meter_id)
    if log is None:
        log = state.logs[state.meter_id] = ReadingLog(rules.duplicate_memory)
    log.add(ts, milli)


def _record_reading(
    state: AccountState, out: Emitter, meter_id: str, ts: datetime, energy: Decimal, source: str
) -> None:
    out.row(
        "readings",
        meter_id=meter_id,
        account_id=state.account_id,
        ts=ts,
        energy_kwh=energy,
        source=source,
    )


def _reading(
    state: AccountState | None, r: Reading, out: Emitter, rules: BillingRules
) -> AccountState:
    if state is None:
        raise Rejected("unknown_meter", f"no open account owns {r.meter_id} at {ts_text(r.ts)}")
    milli = to_milli(r.energy)
    log = state.logs.get(r.meter_id)
    known = log.energy_at(r.ts) if log is not None else None
    if known is not None:
        raise Rejected(
            "duplicate" if known == milli else "conflict",
            f"a reading at {ts_text(r.ts)} was accepted with {kwh_text(from_milli(known))} kWh",
        )
    if state.status == CLOSED or r.meter_id != state.meter_id:
        # The account owned this meter at r.ts, but its series has since ended
        # (replacement or move-out): the reading is older than the series' last value.
        raise Rejected("out_of_order", f"{r.meter_id}'s series ended before this reading arrived")
    before = state.available
    day = state.day.day
    cause = cause_of(r)
    if state.baseline is None:
        _record_reading(state, out, r.meter_id, r.ts, r.energy, r.source)
        close_days_until(state, out, rules, r.ts)
        _remember(state, r.ts, milli, rules)
        _after(state, out, rules, before=before, ts=r.ts, cause=cause, always_row=False, day=day)
        return state
    start, previous = state.baseline
    if r.ts <= start:
        raise Rejected(
            "out_of_order", f"older than the latest accepted reading at {ts_text(start)}"
        )
    delta = milli - previous
    if delta < 0:
        rolled = milli + to_milli(rules.register_max_kwh) - previous
        if _too_fast(rolled, start, r.ts, rules):
            state.baseline = (r.ts, milli)
            _anomaly(state, out, r, "meter_regression", previous)
            raise Rejected("meter_regression", "register went backwards; rebased without charge")
        delta = rolled
    elif _too_fast(delta, start, r.ts, rules):
        _anomaly(state, out, r, "implausible_jump", previous)
        raise Rejected("implausible_jump", f"mean power above {rules.max_power_kw} kW")
    _record_reading(state, out, r.meter_id, r.ts, r.energy, r.source)
    rate_span(state, out, rules, start, r.ts, delta)
    close_days_until(state, out, rules, r.ts)
    _remember(state, r.ts, milli, rules)
    if (
        state.status == DISCONNECTED
        and delta > CONSUMPTION_NOTICE_MILLI
        and not state.warned_consumption
    ):
        state.warned_consumption = True
        notify(
            state,
            out,
            "consumption_while_disconnected",
            ts=r.ts,
            cause=cause,
            data={"meter_id": r.meter_id, "kwh": kwh_text(from_milli(delta))},
        )
    _after(state, out, rules, before=before, ts=r.ts, cause=cause, always_row=False, day=day)
    return state


def valid_topup_amount(amount: Decimal, rules: BillingRules) -> bool:
    """A top-up amount is > 0, has at most 2 decimals and stays within the maximum."""
    return 0 < amount <= rules.max_topup and decimal_places(amount) <= 2


def _payment_target(state: AccountState | None, payment_id: str) -> AccountState:
    if state is not None and payment_id in state.payment_ids:
        raise Rejected("duplicate_payment", f"payment {payment_id} was already applied")
    if state is None:
        raise Rejected("unknown_account", "no such account")
    if state.status == CLOSED:
        raise Rejected("account_closed", "the account is closed")
    return state


def _topup(state: AccountState | None, t: TopUp, out: Emitter, rules: BillingRules) -> AccountState:
    state = _payment_target(state, t.payment_id)
    if not valid_topup_amount(t.amount, rules):
        raise Rejected(
            "invalid_amount", f"amount must be > 0, ≤ {rules.max_topup}, at most 2 decimals"
        )
    before = state.available
    aid, pid = state.account_id, t.payment_id
    state.payment_ids.add(pid)
    post_ledger(
        state, out, kind="topup", amount=t.amount, ts=t.ts, ref=pid, entry_id=f"topup:{aid}:{pid}"
    )
    points = int(t.amount // 1) if before >= 0 else 0
    if points:
        state.wallet.earn(t.ts.year, points)
        post_points(state, out, kind="basic", points=points, ts=t.ts, entry_id=f"basic:{aid}:{pid}")
    rebate_total = Decimal("0.00")
    month = t.ts.strftime("%Y-%m")
    for campaign in rules.campaigns:
        used = state.rebates.get((campaign.campaign_id, month), 0)
        if (
            campaign.matches(t.amount, t.channel, t.ts.date())
            and used < campaign.per_account_per_month
        ):
            state.rebates[(campaign.campaign_id, month)] = used + 1
            rebate_total += campaign.rebate
            post_ledger(
                state,
                out,
                kind="rebate",
                amount=campaign.rebate,
                ts=t.ts,
                ref=pid,
                entry_id=f"rebate:{aid}:{pid}:{campaign.campaign_id}",
            )
    if t.request_id is not None and state.request is not None and state.request[0] == t.request_id:
        state.request = None
    notify(
        state,
        out,
        "topup_received",
        ts=t.ts,
        cause=pid,
        data={
            "payment_id": pid,
            "amount": money(t.amount),
            "channel": t.channel,
            "rebate": money(rebate_total),
            "points": points,
            "balance": money(state.balance),
            "available": money(state.available),
        },
    )
    reconnection(state, out, t.ts, pid)
    _after(state, out, rules, before=before, ts=t.ts, cause=pid, always_row=True)
    return state


def _redeem(
    state: AccountState | None, r: Redeem, out: Emitter, rules: BillingRules
) -> AccountState:
    state = _payment_target(state, r.payment_id)
    if r.points < 1:
        raise Rejected("invalid_amount", "redeem at least 1 point")
    if r.points > state.wallet.total:
        raise Rejected("insufficient_points", f"{state.wallet.total} points held")
    before = state.available
    aid, pid = state.account_id, r.payment_id
    state.payment_ids.add(pid)
    state.wallet.spend(r.points)
    post_points(
        state, out, kind="redemption", points=-r.points, ts=r.ts, entry_id=f"redeem:{aid}:{pid}"
    )
    post_ledger(
        state,
        out,
        kind="points_redemption",
        amount=Decimal(r.points).scaleb(-2),
        ts=r.ts,
        ref=pid,
        entry_id=f"redeem:{aid}:{pid}",
    )
    reconnection(state, out, r.ts, pid)
    _after(state, out, rules, before=before, ts=r.ts, cause=pid, always_row=True)
    return state


def _final_reading(
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
        _record_reading(state, out, meter_id, ts, energy, "final")
        rate_span(state, out, rules, start, ts, milli - previous)
        _remember(state, ts, milli, rules)


def _account_event(
    state: AccountState | None,
    e: AccountEvent,
    verdict: str | None,
    out: Emitter,
    rules: BillingRules,
) -> AccountState:
    if verdict is not None:
        raise Rejected(verdict, f"{e.kind} does not fit the account's lifecycle")
    cause = cause_of(e)
    if e.kind == "open":
        f = e.fields
        state = new_account(
            account_id=e.account_id,
            meter_id=e.meter_id,
            plan_id=e.plan,
            ts=e.ts,
            opening_balance=f["opening_balance"],
            ytd_kwh=f["ytd_kwh"],
            threshold=f.get("low_balance_threshold", rules.default_threshold),
            rules=rules,
        )
        _update_settings(state, f)
        state.district, state.landlord_id = f.get("district"), f.get("landlord_id")
        _after(state, out, rules, before=None, ts=e.ts, cause=cause, always_row=True)
        return state
    if state is None:
        raise Rejected("unknown_account", "no such account")
    before = state.available
    if e.kind == "change_plan":
        state.plans.append((e.ts, e.plan))
    elif e.kind == "update":
        _update_settings(state, e.fields)
        before = None
    elif e.kind == "replace_meter":
        _final_reading(state, out, rules, e.fields["old_meter_id"], e.ts, e.fields["old_final_kwh"])
        close_days_until(state, out, rules, e.ts)
        state.meter_id = e.meter_id
        state.baseline = (e.ts, to_milli(e.fields["new_initial_kwh"]))
        _record_reading(state, out, e.meter_id, e.ts, e.fields["new_initial_kwh"], "initial")
    else:
        _close(state, e, out, rules, cause)
        return state
    if e.kind == "change_plan":
        before = None
    _after(state, out, rules, before=before, ts=e.ts, cause=cause, always_row=True)
    return state


def _update_settings(state: AccountState, fields: dict[str, object]) -> None:
    if "low_balance_threshold" in fields:
        state.threshold = fields["low_balance_threshold"]  # type: ignore[assignment]
    if "auto_topup_amount" in fields:
        state.auto_topup_amount = fields["auto_topup_amount"]  # type: ignore[assignment]
        if state.auto_topup_amount is None:
            state.request = None
    if "phone" in fields:
        state.phone = fields["phone"]  # type: ignore[assignment]
    if "locale" in fields:
        state.locale = fields["locale"]  # type: ignore[assignment]


def _close(
    state: AccountState, e: AccountEvent, out: Emitter, rules: BillingRules, cause: str
) -> None:
    """Move-out settlement (S14.10): rate, close the day, redeem points, refund."""
    aid = state.account_id
    _final_reading(state, out, rules, state.meter_id, e.ts, e.fields.get("final_kwh"))
    close_days_until(state, out, rules, e.ts)
    close_day(state, out, rules, e.ts)
    points = state.wallet.total
    if points:
        state.wallet.spend(points)
        post_points(
            state, out, kind="redemption", points=-points, ts=e.ts, entry_id=f"redeem:{aid}:close"
        )
        post_ledger(
            state,
            out,
            kind="points_redemption",
            amount=Decimal(points).scaleb(-2),
            ts=e.ts,
            ref="close",
            entry_id=f"redeem:{aid}:close",
        )
    if state.balance > 0:
        refund = state.balance
        post_ledger(
            state,
            out,
            kind="refund",
            amount=-refund,
            ts=e.ts,
            ref="close",
            entry_id=f"refund:{aid}:close",
        )
        data = {"refund": money(refund)}
    elif state.balance == 0:
        data = {"refund": money(state.balance)}
    else:
        data = {"owed": money(-state.balance)}
    state.status = CLOSED
    state.pending_cut = False
    state.request = None
    notify(state, out, "account_closed", ts=e.ts, cause=cause, data=data)
    account_row(state, out, e.ts)
