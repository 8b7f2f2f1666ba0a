"""What wattpay keeps per account between messages, and its row in the ``accounts`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.emitter import Emitter
from billing.numbers import COST_PLACES, from_cost, from_milli, round_money, to_cost
from billing.reading_log import ReadingLog
from billing.state_pickle import (
    amount,
    day_of,
    decimal_of,
    instant,
    moment_of,
    packed_pairs,
    unpacked_pairs,
    zone_name,
    zone_of,
)
from billing.wallet import PointsWallet


class Status(StrEnum):
    """An account's status (SPEC S5): active → arrears → disconnected → active; closed."""

    ACTIVE = "active"
    ARREARS = "arrears"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


ACTIVE = Status.ACTIVE
ARREARS = Status.ARREARS
DISCONNECTED = Status.DISCONNECTED
CLOSED = Status.CLOSED


CHARGES_KEPT = 30
"""Posted daily charges an account keeps: the overdraft limit's 30 days (S5)."""


@dataclass(slots=True)
class DayTotals:
    """Consumption and exact cost of the account's open day, which ends at ``end``."""

    day: date
    end: datetime
    milli: int = 0
    peak: int = 0
    valley: int = 0
    tiers: list[int] = field(default_factory=lambda: [0, 0, 0])
    cost: int = 0
    """Exact cost in 10^-7 yuan (``billing.numbers.from_cost``)."""


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
    opening_balance: Decimal = Decimal("0.00")
    status: Status = Status.ACTIVE
    baseline: tuple[datetime, int] | None = None
    logs: dict[str, ReadingLog] = field(default_factory=dict)
    charges: list[int] = field(default_factory=list)
    """The last ``CHARGES_KEPT`` posted daily charges, in fen (small ints keep the state small;
    a list, since an empty ``deque`` alone costs 600 bytes an account)."""
    low_armed: bool = True
    arrears_armed: bool = True
    pending_cut: bool = False
    warned_consumption: bool = False
    cut_command: tuple[str, datetime] | None = None
    """The disconnected period's ``disconnect`` command: its id and ts (S14.16)."""
    cut_confirmed: datetime | None = None
    """When a relay result confirmed that command's cut (None: not confirmed by a result)."""
    request: tuple[str, datetime] | None = None
    payment_ids: frozenset[str] = frozenset()
    """The account's payment ids so far; the empty one is shared by every account."""
    rebates: dict[tuple[str, str], int] = field(default_factory=dict)
    wallet: PointsWallet = field(default_factory=PointsWallet)
    ledger_seq: int = 0
    points_seq: int = 0
    version: int = 0
    # ``balance`` in 10^-7 yuan, converted when ``balance`` is another object (a Decimal
    # never changes in place, and the one converted is held, so its id is not reused).
    _units_of: Decimal | None = field(default=None, init=False, repr=False, compare=False)
    _balance_units: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def available_units(self) -> int:
        """``available`` in whole 10^-7 yuan (the ``day.cost`` scale): what the checks compare."""
        balance = self.balance
        if balance is not self._units_of:
            self._balance_units = to_cost(balance)
            self._units_of = balance
        return self._balance_units - self.day.cost

    @property
    def plan_id(self) -> str:
        """The plan in force for consumption after the latest change."""
        return self.plans[-1][1]

    @property
    def available(self) -> Decimal:
        """Ledger balance less the exact cost accrued in the open day."""
        cost = self.day.cost
        return self.balance - from_cost(cost) if cost else self.balance

    def __getstate__(self) -> tuple[Any, ...]:
        """The state as one compact tuple (``billing.state_pickle``)."""
        zone = self.opened_at.tzinfo
        day = self.day
        baseline, request = self.baseline, self.request
        cut, confirmed = self.cut_command, self.cut_confirmed
        return (
            zone_name(zone),
            self.account_id,
            self.meter_id,
            instant(self.opened_at, zone),
            packed_pairs(self.plans, zone),
            str(self.balance),
            str(self.threshold),
            day.day.toordinal(),
            instant(day.end, zone),
            day.milli,
            day.peak,
            day.valley,
            day.tiers,
            day.cost,
            self.ytd_milli,
            self.ytd_year,
            str(self.overdraft_limit),
            amount(self.auto_topup_amount),
            self.phone,
            self.locale,
            self.district,
            self.landlord_id,
            str(self.opening_balance),
            self.status.value,
            None if baseline is None else (instant(baseline[0], zone), baseline[1]),
            self.logs,
            CHARGES_KEPT,
            self.charges,
            self.low_armed,
            self.arrears_armed,
            self.pending_cut,
            self.warned_consumption,
            None if request is None else (request[0], instant(request[1], zone)),
            self.payment_ids,
            self.rebates,
            self.wallet.lots,
            self.ledger_seq,
            self.points_seq,
            self.version,
            None if cut is None else (cut[0], instant(cut[1], zone)),
            None if confirmed is None else instant(confirmed, zone),
        )

    def __setstate__(self, packed: tuple[Any, ...]) -> None:
        (zone, self.account_id, self.meter_id, opened_at, plans, balance, threshold) = packed[:7]
        zone = zone_of(zone)
        (day, end, milli, peak, valley, tiers, cost) = packed[7:14]
        (self.ytd_milli, self.ytd_year, overdraft_limit, auto_topup_amount) = packed[14:18]
        (self.phone, self.locale, self.district, self.landlord_id) = packed[18:22]
        (opening_balance, status, baseline, self.logs, maxlen, charges) = packed[22:28]
        (self.low_armed, self.arrears_armed, self.pending_cut) = packed[28:31]
        (self.warned_consumption, request, payment_ids, self.rebates, lots) = packed[31:36]
        (self.ledger_seq, self.points_seq, self.version) = packed[36:39]
        # Snapshots from before S14.16's confirmed cuts end here: no cut on record.
        (cut, confirmed) = packed[39:41] if len(packed) > 39 else (None, None)
        self.opened_at = moment_of(opened_at, zone)
        self.plans = unpacked_pairs(plans, zone)
        self.balance, self.threshold = Decimal(balance), Decimal(threshold)
        self.day = DayTotals(day_of(day), moment_of(end, zone), milli, peak, valley, tiers, 0)
        # 10^-7 yuan; a snapshot from before integer costs holds the decimal's text.
        self.day.cost = cost if type(cost) is int else int(Decimal(cost).scaleb(COST_PLACES))
        self.overdraft_limit = Decimal(overdraft_limit)
        self.auto_topup_amount = decimal_of(auto_topup_amount)
        self.opening_balance = Decimal(opening_balance)
        self.status = Status(status)
        self.baseline = None if baseline is None else (moment_of(baseline[0], zone), baseline[1])
        self.charges = list(charges)[-maxlen:]
        self.payment_ids = frozenset(payment_ids)
        self.request = None if request is None else (request[0], moment_of(request[1], zone))
        self.wallet = PointsWallet(lots)
        self.cut_command = None if cut is None else (cut[0], moment_of(cut[1], zone))
        self.cut_confirmed = None if confirmed is None else moment_of(confirmed, zone)
        self._units_of, self._balance_units = None, 0

    def plan_at(self, moment: datetime) -> str:
        """The plan in force at ``moment``."""
        current = self.plans[0][1]
        for start, plan_id in self.plans:
            if start <= moment:
                current = plan_id
        return current


def account_row(state: AccountState, out: Emitter, ts: datetime) -> None:
    """The account's current state for the ``accounts`` table (latest version wins)."""
    state.version += 1
    out.row(
        "accounts",
        account_id=state.account_id,
        meter_id=state.meter_id,
        plan=state.plan_id,
        status=state.status.value,
        balance=round_money(state.balance),
        available=round_money(state.available),
        overdraft_limit=state.overdraft_limit,
        points=state.wallet.total,
        ytd_kwh=from_milli(state.ytd_milli),
        updated_at=ts,
        version=state.version,
        opening_balance=state.opening_balance,
        landlord_id=state.landlord_id or "",
    )
