"""Per-account state: balance, the open day, tier-cycle consumption, rating and day close."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from billing.apportion import Part, apportion
from billing.clock import local_midnight, ts_text
from billing.numbers import ZERO, from_milli, round_money, to_milli
from billing.outputs import NOTIFICATIONS, Emitter
from billing.points import PointsWallet
from billing.rating import rate_part
from billing.reading_log import ReadingLog
from billing.rules import BillingRules

ACTIVE, ARREARS, DISCONNECTED, CLOSED = "active", "arrears", "disconnected", "closed"


@dataclass(slots=True)
class DayTotals:
    """Consumption and exact cost of the account's open day, which ends at ``end``."""

    day: date
    end: datetime
    milli: int = 0
    peak: int = 0
    valley: int = 0
    tiers: list[int] = field(default_factory=lambda: [0, 0, 0])
    cost: Decimal = ZERO


@dataclass(slots=True)
class AccountState:
    """Everything wattpay keeps per account between messages."""

    account_id: str
    meter_id: str
    opened_at: datetime
    plans: list[tuple[datetime, str]]
    balance: Decimal
    threshold: Decimal
    day: DayTotals
    ytd_milli: int
    ytd_year: int
    overdraft_limit: Decimal
    auto_topup_amount: Decimal | None = None
    phone: str | None = None
    locale: str = "zh-CN"
    district: str | None = None
    landlord_id: str | None = None
    opening_balance: Decimal = ZERO
    status: str = ACTIVE
    baseline: tuple[datetime, int] | None = None
    logs: dict[str, ReadingLog] = field(default_factory=dict)
    charges: deque[Decimal] = field(default_factory=lambda: deque(maxlen=30))
    low_armed: bool = True
    arrears_armed: bool = True
    pending_cut: bool = False
    warned_consumption: bool = False
    request: tuple[str, datetime] | None = None
    payment_ids: set[str] = field(default_factory=set)
    rebates: dict[tuple[str, str], int] = field(default_factory=dict)
    wallet: PointsWallet = field(default_factory=PointsWallet)
    ledger_seq: int = 0
    points_seq: int = 0
    version: int = 0

    @property
    def plan_id(self) -> str:
        """The plan in force for consumption after the latest change."""
        return self.plans[-1][1]

    @property
    def available(self) -> Decimal:
        """Ledger balance less the exact cost accrued in the open day."""
        return self.balance - self.day.cost

    def plan_at(self, moment: datetime) -> str:
        """The plan in force at ``moment``."""
        current = self.plans[0][1]
        for start, plan_id in self.plans:
            if start <= moment:
                current = plan_id
        return current


def open_day(day: date, rules: BillingRules) -> DayTotals:
    """Empty totals for local ``day``."""
    return DayTotals(day, local_midnight(day + timedelta(days=1), rules.zone))


def post_ledger(
    state: AccountState,
    out: Emitter,
    *,
    kind: str,
    amount: Decimal,
    ts: datetime,
    ref: str,
    entry_id: str,
) -> None:
    """Post a signed money movement and its ``ledger`` row."""
    state.balance += amount
    state.ledger_seq += 1
    out.row(
        "ledger",
        entry_id=entry_id,
        account_id=state.account_id,
        seq=state.ledger_seq,
        ts=ts,
        kind=kind,
        amount=amount,
        balance_after=state.balance,
        ref=ref,
    )


def post_points(
    state: AccountState, out: Emitter, *, kind: str, points: int, ts: datetime, entry_id: str
) -> None:
    """Record a signed points movement (the wallet is updated by the caller)."""
    state.points_seq += 1
    out.row(
        "points_ledger",
        entry_id=entry_id,
        account_id=state.account_id,
        seq=state.points_seq,
        ts=ts,
        kind=kind,
        points=points,
        balance_after=state.wallet.total,
    )


def overdraft_limit(charges: deque[Decimal], rules: BillingRules) -> Decimal:
    """clamp(round(3 × mean of the last ≤30 posted daily charges), 10.00, 100.00)."""
    recent = list(charges)[-rules.overdraft_days :]
    if not recent:
        return rules.overdraft_min
    limit = round_money(3 * sum(recent) / len(recent))
    return min(max(limit, rules.overdraft_min), rules.overdraft_max)


def close_day(state: AccountState, out: Emitter, rules: BillingRules, charge_ts: datetime) -> None:
    """Close the open day: charge, daily usage, points, expiry, overdraft limit; open the next."""
    totals = state.day
    day = totals.day
    charge = round_money(totals.cost)
    state.day = open_day(day + timedelta(days=1), rules)
    aid = state.account_id
    post_ledger(
        state,
        out,
        kind="charge",
        amount=-charge,
        ts=charge_ts,
        ref=day.isoformat(),
        entry_id=f"charge:{aid}:{day.isoformat()}",
    )
    state.charges.append(charge)
    out.row(
        "daily_usage",
        account_id=aid,
        day=day,
        kwh=from_milli(totals.milli),
        kwh_peak=from_milli(totals.peak),
        kwh_valley=from_milli(totals.valley),
        kwh_tier1=from_milli(totals.tiers[0]),
        kwh_tier2=from_milli(totals.tiers[1]),
        kwh_tier3=from_milli(totals.tiers[2]),
        charge=charge,
        ytd_kwh=from_milli(state.ytd_milli),
        closing_balance=state.balance,
    )
    if state.balance > 0:
        earned = int(state.balance // 100)
        if earned > 0:
            state.wallet.earn(day.year, earned)
            post_points(
                state,
                out,
                kind="daily",
                points=earned,
                ts=charge_ts,
                entry_id=f"daily:{aid}:{day.isoformat()}",
            )
    if day.month == 12 and day.day == 31:
        expired = state.wallet.expire_through(day.year - 1)
        if expired:
            post_points(
                state,
                out,
                kind="expiry",
                points=-expired,
                ts=charge_ts,
                entry_id=f"expiry:{aid}:{day.year - 1}",
            )
    if day.month == 12 and day.day == 1:
        expiring = state.wallet.held_through(day.year - 1)
        if expiring:
            notify(
                state,
                out,
                "points_expiring",
                ts=charge_ts,
                cause=f"day@{day.isoformat()}",
                data={"points": expiring, "expires_on": date(day.year, 12, 31).isoformat()},
            )
    state.overdraft_limit = overdraft_limit(state.charges, rules)
    if state.day.day.year != state.ytd_year:
        state.ytd_milli = 0
        state.ytd_year = state.day.day.year


def close_days_until(
    state: AccountState, out: Emitter, rules: BillingRules, moment: datetime
) -> None:
    """Close every day D whose end (D+1 00:00) is at or before ``moment``."""
    while True:
        if state.day.end > moment:
            return
        close_day(state, out, rules, state.day.end)


def rate_span(
    state: AccountState,
    out: Emitter,
    rules: BillingRules,
    start: datetime,
    end: datetime,
    milli_kwh: int,
) -> None:
    """Apportion and rate consumption over [start, end), closing days as midnight passes."""
    cuts: set[datetime] = set()
    midnight = local_midnight(start.date() + timedelta(days=1), rules.zone)
    while midnight < end:
        cuts.add(midnight)
        midnight = local_midnight(midnight.date() + timedelta(days=1), rules.zone)
    changes = len(state.plans) > 1
    plan_starts = [start] + [s for s, _ in state.plans if start < s < end] if changes else [start]
    cuts.update(plan_starts[1:])
    for index, segment_start in enumerate(plan_starts):
        segment_end = plan_starts[index + 1] if index + 1 < len(plan_starts) else end
        plan = rules.plans[state.plan_at(segment_start) if changes else state.plans[0][1]]
        if plan.is_tou:
            cuts.update(plan.period_boundaries(segment_start, segment_end))
    parts = apportion(start, end, milli_kwh, cuts) if cuts else [Part(start, end, milli_kwh)]
    aid = state.account_id
    for part in parts:
        if part.start >= state.day.end:
            close_days_until(state, out, rules, part.start)
        if part.start.year != state.ytd_year:
            state.ytd_milli, state.ytd_year = 0, part.start.year
        plan = rules.plans[state.plan_at(part.start) if changes else state.plans[0][1]]
        for piece in rate_part(plan, part.start, part.end, part.milli_kwh, state.ytd_milli):
            totals = state.day
            totals.milli += piece.milli_kwh
            totals.tiers[piece.tier - 1] += piece.milli_kwh
            if piece.period == "peak":
                totals.peak += piece.milli_kwh
            elif piece.period == "valley":
                totals.valley += piece.milli_kwh
            totals.cost += piece.cost
            state.ytd_milli += piece.milli_kwh
            out.row(
                "intervals",
                interval_id=f"{aid}:{ts_text(piece.start)}:{piece.tier}",
                account_id=aid,
                meter_id=state.meter_id,
                start=piece.start,
                end=piece.end,
                kwh=from_milli(piece.milli_kwh),
                period=piece.period,
                tier=piece.tier,
                price=piece.price,
                cost=piece.cost,
            )
    if changes:
        # Plan changes now in the past matter no more, except the one in force.
        in_force = [entry for entry in state.plans if entry[0] <= end][-1:]
        state.plans = in_force + [entry for entry in state.plans if entry[0] > end]


def notify(
    state: AccountState,
    out: Emitter,
    kind: str,
    *,
    ts: datetime,
    cause: str,
    data: dict[str, object],
) -> None:
    """Emit a notification for the account's household (S7)."""
    value: dict[str, object] = {
        "type": kind,
        "account_id": state.account_id,
        "ts": ts_text(ts),
        "locale": state.locale,
    }
    if state.phone:
        value["phone"] = state.phone
    value["data"] = data
    out.event(
        NOTIFICATIONS,
        id_field="event_id",
        event_id=f"{kind}:{state.account_id}:{cause}",
        kind=kind,
        account_id=state.account_id,
        meter_id=state.meter_id,
        ts=ts,
        key=state.account_id,
        value=value,
        data=data,
    )


def new_account(
    *,
    account_id: str,
    meter_id: str,
    plan_id: str,
    ts: datetime,
    opening_balance: Decimal,
    ytd_kwh: Decimal,
    threshold: Decimal,
    rules: BillingRules,
) -> AccountState:
    """A freshly opened account."""
    return AccountState(
        account_id=account_id,
        meter_id=meter_id,
        opened_at=ts,
        plans=[(ts, plan_id)],
        balance=opening_balance,
        opening_balance=opening_balance,
        threshold=threshold,
        day=open_day(ts.date(), rules),
        ytd_milli=to_milli(ytd_kwh),
        ytd_year=ts.year,
        overdraft_limit=rules.overdraft_min,
    )
