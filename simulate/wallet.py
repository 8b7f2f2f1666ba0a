"""A small exact model of one prepaid account, used to time the example scenarios.

The example generator needs to know roughly when a household's money runs low (to top up, to
answer an auto top-up request, or to be cut off and stop consuming). This model follows SPEC
S4–S6 and S14 closely enough for that: built-in Zhejiang prices, annual tiers, days closed by
readings with the charge rounded half up to the fen, the overdraft limit, the disconnection
window and the 24-hour auto top-up rule. Money is integer units of 1e-7 yuan, so that
``Wh × price (1e-4 yuan/kWh)`` is exact; energy is integer Wh. It is an estimate for the
generator, not the billing engine: spans are priced by the period in force at their start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

LOCAL_OFFSET = 8 * 3600
DAY = 86_400
UNITS_PER_FEN = 100_000
UNITS_PER_YUAN = 100 * UNITS_PER_FEN
TIER_BOUNDS_WH = (2_760_000, 4_800_000)
PRICES: dict[str, tuple[int, int, int]] = {  # 1e-4 yuan per kWh by tier (SPEC S4)
    "flat": (5380, 5880, 8380),
    "peak": (5680, 6180, 8680),
    "valley": (2880, 3380, 5880),
}
PEAK_HOURS = (8 * 3600, 22 * 3600)
WINDOW_HOURS = (8 * 3600, 17 * 3600)
REBATE_CHANNELS = frozenset({"app", "alipay", "wechat"})


LOCAL_ZONE = timezone(timedelta(hours=8), "Asia/Shanghai")


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


def in_window(t: int) -> bool:
    """Tell whether ``t`` is inside the default disconnection window (Mon–Fri 08:00–17:00)."""
    weekday = (local_day(t) + 3) % 7  # 1970-01-01 was a Thursday
    return weekday < 5 and WINDOW_HOURS[0] <= seconds_of_day(t) < WINDOW_HOURS[1]


def tiered_cost(ytd_wh: int, delta_wh: int, prices: tuple[int, int, int]) -> int:
    """Exact cost (units) of ``delta_wh`` taking the tier-year total from ``ytd_wh`` upwards."""
    if ytd_wh + delta_wh <= TIER_BOUNDS_WH[0]:
        return delta_wh * prices[0]
    cost = 0
    level = ytd_wh
    rest = delta_wh
    for tier, price in enumerate(prices):
        if rest <= 0:
            break
        bound = TIER_BOUNDS_WH[tier] if tier < len(TIER_BOUNDS_WH) else None
        if bound is not None and level >= bound:
            continue
        part = rest if bound is None else min(rest, bound - level)
        cost += part * price
        level += part
        rest -= part
    return cost


def price_column(plan: str, t: int) -> tuple[int, int, int]:
    """Price column of ``plan`` for a span starting at ``t``."""
    if plan != "zhejiang-tou":
        return PRICES["flat"]
    peak = PEAK_HOURS[0] <= seconds_of_day(t) < PEAK_HOURS[1]
    return PRICES["peak" if peak else "valley"]


@dataclass(slots=True)
class Wallet:
    """Balance, open day, overdraft state and auto top-up state of one account."""

    plan: str
    ledger: int
    ytd_wh: int
    day: int
    threshold: int = 20 * UNITS_PER_YUAN
    auto_fen: int | None = None
    day_cost: int = 0
    charges: list[int] = field(default_factory=list)
    points: int = 0
    disconnected: bool = False
    pending_cut: bool = False
    request_at: int | None = None
    rebate_months: set[int] = field(default_factory=set)
    _limit: int = 10 * UNITS_PER_YUAN

    def available(self) -> int:
        """Ledger balance minus the exact cost of the open day (units)."""
        return self.ledger - self.day_cost

    def limit(self) -> int:
        """Overdraft limit (units): 3 × mean of the last ≤ 30 daily charges, in [10, 100]."""
        return self._limit

    def _overdraft_limit(self) -> int:
        recent = self.charges[-30:]
        k = len(recent)
        fen = (6 * sum(recent) + k) // (2 * k)  # round_half_up(3 × sum / k)
        return min(max(fen, 1000), 10_000) * UNITS_PER_FEN

    def consume(self, start: int, delta_wh: int) -> None:
        """Add the cost of ``delta_wh`` used in a span starting at ``start`` to the open day."""
        if delta_wh > 0:
            self.day_cost += tiered_cost(self.ytd_wh, delta_wh, price_column(self.plan, start))
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
        """Credit a top-up (and the default rebate); return the rebate in fen."""
        if self.available() >= 0:
            self.points += fen // 100
        self.ledger += fen * UNITS_PER_FEN
        rebate = 0
        month = _month_key(local_day(t))
        if fen >= 50_000 and channel in REBATE_CHANNELS and month not in self.rebate_months:
            self.rebate_months.add(month)
            rebate = 3000
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
            and (self.request_at is None or t - self.request_at >= DAY)
        ):
            self.request_at = t
            actions.append("request")
        if not self.disconnected:
            if available < -self.limit():
                if in_window(t):
                    self.disconnected = True
                    self.pending_cut = False
                    actions.append("cut")
                elif not self.pending_cut:
                    self.pending_cut = True
                    actions.append("scheduled")
            elif self.pending_cut and in_window(t):
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
