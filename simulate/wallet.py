"""A small exact model of one prepaid account, used to time the example scenarios.

The example generator needs to know roughly when a household's money runs low (to top up, to
answer an auto top-up request, or to be cut off and stop consuming). This model follows the
billing rules it is given (``billing.rules.BillingRules``: the tariff plans of
``billing.tariffs``, the disconnection window, the rebate campaigns, the overdraft bounds and
the auto top-up retry), with days closed by readings and the charge rounded half up to the
fen. Money is integer units of 1e-7 yuan, so that ``Wh × price (1e-4 yuan/kWh)`` is exact;
energy is integer Wh. It is an estimate for the generator, not the billing engine: spans are
priced by the period in force at their start, and local time is Asia/Shanghai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from billing.clock import LOCAL_ZONE
from billing.rules import BillingRules, DisconnectWindow, RebateCampaign
from billing.tariffs import FLAT, Plan

LOCAL_OFFSET = 8 * 3600  # Asia/Shanghai has kept UTC+8 all year since 1992
DAY = 86_400
UNITS_PER_FEN = 100_000
UNITS_PER_YUAN = 100 * UNITS_PER_FEN


def iso(t: int) -> str:
    """Render epoch second ``t`` as local ISO-8601 with its +08:00 offset."""
    return datetime.fromtimestamp(t, LOCAL_ZONE).isoformat()


def local_day(t: int) -> int:
    """Local (UTC+8) day number of epoch second ``t``."""
    return (t + LOCAL_OFFSET) // DAY


def day_start(day: int) -> int:
    """Epoch second of local midnight starting ``day``."""
    return day * DAY - LOCAL_OFFSET


def seconds_of_day(t: int) -> int:
    """Local seconds since midnight of epoch second ``t``."""
    return (t + LOCAL_OFFSET) % DAY


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def _fen(yuan: Decimal) -> int:
    """Whole fen of an amount in yuan (amounts in rules have at most 2 decimals)."""
    return int(yuan * 100)


@dataclass(frozen=True, slots=True)
class WalletPlan:
    """A tariff plan in the wallet's units: Wh tier bounds, 1e-7 yuan per Wh by tier.

    ``Wh × price`` in these units is exact for prices with up to 4 decimals per kWh.
    """

    plan: Plan
    tier_bounds_wh: tuple[int, ...]
    columns: dict[str, tuple[int, ...]]
    _by_second: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @staticmethod
    def of(plan: Plan) -> WalletPlan:
        """The integer form of ``plan``."""
        return WalletPlan(
            plan,
            tuple(int(bound * 1000) for bound in plan.tier_bounds),
            {name: tuple(int(p * 10_000) for p in row) for name, row in plan.prices.items()},
        )

    def column(self, t: int) -> tuple[int, ...]:
        """Prices by tier of the period in force at ``t`` (the plan's own period rule)."""
        if not self.plan.is_tou:
            return self.columns[FLAT]
        second = seconds_of_day(t)
        found = self._by_second.get(second)
        if found is None:
            moment = datetime(2000, 1, 3, tzinfo=LOCAL_ZONE) + timedelta(seconds=second)
            found = self._by_second[second] = self.columns[self.plan.period_at(moment)]
        return found

    def cost(self, ytd_wh: int, delta_wh: int, prices: tuple[int, ...]) -> int:
        """Exact cost (units) of ``delta_wh`` taking the tier-year total from ``ytd_wh`` up."""
        bounds = self.tier_bounds_wh
        if not bounds or ytd_wh + delta_wh <= bounds[0]:
            return delta_wh * prices[0]
        cost = 0
        level = ytd_wh
        rest = delta_wh
        for tier, price in enumerate(prices):
            if rest <= 0:
                break
            bound = bounds[tier] if tier < len(bounds) else None
            if bound is not None and level >= bound:
                continue
            part = rest if bound is None else min(rest, bound - level)
            cost += part * price
            level += part
            rest -= part
        return cost


@dataclass(frozen=True, slots=True)
class WalletRules:
    """The billing rules (tariffs, window, campaigns, limits) in the wallet's integer units."""

    rules: BillingRules
    plans: dict[str, WalletPlan]
    window: DisconnectWindow
    window_seconds: tuple[int, int]
    campaigns: tuple[tuple[RebateCampaign, int, int], ...]  # with minimum and rebate in fen
    threshold: int
    overdraft_fen: tuple[int, int]
    overdraft_days: int
    request_retry: int

    @staticmethod
    def of(rules: BillingRules) -> WalletRules:
        """The integer form of ``rules``."""
        window = rules.window
        return WalletRules(
            rules=rules,
            plans={plan_id: WalletPlan.of(plan) for plan_id, plan in rules.plans.items()},
            window=window,
            window_seconds=(_seconds(window.start), _seconds(window.end)),
            campaigns=tuple((c, _fen(c.min_amount), _fen(c.rebate)) for c in rules.campaigns),
            threshold=_fen(rules.default_threshold) * UNITS_PER_FEN,
            overdraft_fen=(_fen(rules.overdraft_min), _fen(rules.overdraft_max)),
            overdraft_days=rules.overdraft_days,
            request_retry=rules.auto_topup_retry_hours * 3600,
        )

    def in_window(self, t: int) -> bool:
        """Tell whether ``t`` is inside the disconnection window (a window day, in hours)."""
        start, end = self.window_seconds
        return self.window.is_window_day(local_date(local_day(t))) and (
            start <= seconds_of_day(t) < end
        )

    def rebate_channels(self) -> tuple[str, ...]:
        """Every channel some campaign rewards, in name order."""
        return tuple(sorted({channel for c, _, _ in self.campaigns for channel in c.channels}))

    def rebate_minimum(self) -> int:
        """The smallest top-up (fen) that earns a rebate in some campaign (0 without any)."""
        return min((minimum for _, minimum, _ in self.campaigns), default=0)


DEFAULT_RULES = WalletRules.of(BillingRules())


@dataclass(slots=True)
class Wallet:
    """Balance, open day, overdraft state and auto top-up state of one account."""

    plan: str
    ledger: int
    ytd_wh: int
    day: int
    threshold: int | None = None  # units; None: the rules' default threshold
    auto_fen: int | None = None
    day_cost: int = 0
    charges: list[int] = field(default_factory=list)
    points: int = 0
    disconnected: bool = False
    pending_cut: bool = False
    request_at: int | None = None
    rebates: dict[tuple[str, int], int] = field(default_factory=dict)
    money: WalletRules = DEFAULT_RULES
    _limit: int = 0

    def __post_init__(self) -> None:
        if self.threshold is None:
            self.threshold = self.money.threshold
        self._limit = self.money.overdraft_fen[0] * UNITS_PER_FEN

    def available(self) -> int:
        """Ledger balance minus the exact cost of the open day (units)."""
        return self.ledger - self.day_cost

    def limit(self) -> int:
        """Overdraft limit (units): 3 × mean of the last daily charges, within the rules' bounds."""
        return self._limit

    def _overdraft_limit(self) -> int:
        recent = self.charges[-self.money.overdraft_days :]
        k = len(recent)
        fen = (6 * sum(recent) + k) // (2 * k)  # round_half_up(3 × sum / k)
        low, high = self.money.overdraft_fen
        return min(max(fen, low), high) * UNITS_PER_FEN

    def consume(self, start: int, delta_wh: int) -> None:
        """Add the cost of ``delta_wh`` used in a span starting at ``start`` to the open day."""
        if delta_wh > 0:
            plan = self.money.plans[self.plan]
            self.day_cost += plan.cost(self.ytd_wh, delta_wh, plan.column(start))
            self.ytd_wh += delta_wh

    def close_days(self, t: int) -> None:
        """Close every open day that ended at or before ``t`` (charge, daily points, tiers)."""
        while t >= day_start(self.day + 1):
            self.close_day()

    def close_day(self) -> None:
        """Post the open day's charge rounded half up to the fen and start the next day."""
        fen = (self.day_cost + UNITS_PER_FEN // 2) // UNITS_PER_FEN
        self.ledger -= fen * UNITS_PER_FEN
        self.charges.append(fen)
        self._limit = self._overdraft_limit()
        if self.ledger > 0:
            self.points += self.ledger // (100 * UNITS_PER_YUAN)
        self.day += 1
        self.day_cost = 0
        month, day_of_month = _month_day(self.day)
        if month == 1 and day_of_month == 1:
            self.ytd_wh = 0

    def top_up(self, fen: int, channel: str, t: int, request_id_at: int | None = None) -> int:
        """Credit a top-up (and the rebates of the campaigns); return the rebate in fen."""
        if self.available() >= 0:
            self.points += fen // 100
        self.ledger += fen * UNITS_PER_FEN
        rebate = 0
        day = local_date(local_day(t))
        month = _month_key(local_day(t))
        amount = Decimal(fen).scaleb(-2)
        for campaign, _, campaign_rebate in self.money.campaigns:
            used = self.rebates.get((campaign.campaign_id, month), 0)
            if campaign.matches(amount, channel, day) and used < campaign.per_account_per_month:
                self.rebates[(campaign.campaign_id, month)] = used + 1
                rebate += campaign_rebate
        self.ledger += rebate * UNITS_PER_FEN
        if request_id_at is not None and request_id_at == self.request_at:
            self.request_at = None
        return rebate

    def redeem(self, points: int) -> None:
        """Credit a points redemption (100 points = 1.00 yuan)."""
        self.points -= points
        self.ledger += points * UNITS_PER_FEN

    def check(self, t: int, before: int, *, credit: bool = False) -> list[str]:
        """Run the post-message checks; return actions: request, reconnect, cut, scheduled."""
        available = self.available()
        actions: list[str] = []
        if credit and available > 0:
            if self.disconnected:
                self.disconnected = False
                actions.append("reconnect")
            self.pending_cut = False
        if (
            available != before
            and self.auto_fen
            and available < self.threshold
            and (self.request_at is None or t - self.request_at >= self.money.request_retry)
        ):
            self.request_at = t
            actions.append("request")
        if not self.disconnected:
            if available < -self.limit():
                if self.money.in_window(t):
                    self.disconnected = True
                    self.pending_cut = False
                    actions.append("cut")
                elif not self.pending_cut:
                    self.pending_cut = True
                    actions.append("scheduled")
            elif self.pending_cut and self.money.in_window(t):
                self.pending_cut = False
        return actions


def local_date(day: int) -> date:
    """Calendar date of local day number ``day``."""
    return date(1970, 1, 1) + timedelta(days=day)


def _month_day(day: int) -> tuple[int, int]:
    """(month, day of month) of local day number ``day``."""
    value = local_date(day)
    return value.month, value.day


def _month_key(day: int) -> int:
    """Return a key for the calendar month of local day number ``day``."""
    value = local_date(day)
    return value.year * 12 + value.month
