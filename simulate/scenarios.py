"""Who lives where in an example input set: premises, meters, tenancies and their roles.

Everything is drawn from one ``random.Random`` per premises, seeded from the set's seed, so a
(households, days, seed, start) tuple always plans the same town. The money side of each role
is then played out by :mod:`simulate.household_sim`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from billing.rules import BillingRules
from billing.tariffs import BUILTIN_PLANS
from simulate.profiles import HouseholdLoad
from simulate.wallet import DAY, LOCAL_OFFSET

# role -> share of households; each role in REQUIRED appears at least as often as listed there
SHARES: dict[str, float] = {
    "cut_in": 0.02,
    "cut_out": 0.02,
    "tamper": 0.005,
    "arrears": 0.03,
    "auto": 0.08,
    "rebate": 0.10,
    "move_out": 0.01,
    "replace": 0.01,
    "change_plan": 0.02,
    "update": 0.03,
    "regression": 0.003,
    "rollover": 0.003,
    "hourly": 0.03,
    "irregular": 0.02,
}
REQUIRED: tuple[str, ...] = (
    "cut_in",
    "cut_out",
    "auto",
    "rebate",
    "move_out",
    "replace",
    "change_plan",
    "update",
    "tamper",
    "arrears",
    "auto",
    "hourly",
    "irregular",
    "regression",
    "rollover",
)
CUT_ROLES = frozenset({"cut_in", "cut_out", "tamper"})
TIERED_ONLY = CUT_ROLES | {"arrears", "auto", "change_plan"}
PROFILE_SCALES: dict[str, tuple[int, int, int]] = {  # weight, scale range in hundredths
    "single_person_under30": (25, 140, 260),
    "2_fulltime_employees": (30, 75, 160),
    "2_persons_over65": (20, 75, 160),
    "family": (25, 60, 125),
}
DISTRICTS = ("西湖区", "上城区", "拱墅区", "滨江区", "萧山区", "余杭区", "临平区", "钱塘区")
REGISTER_MAX_WH = int(BillingRules().register_max_kwh * 1000)  # where billing sees a rollover
TIERED, TOU = "zhejiang-tiered", "zhejiang-tou"
FIRST_TIER_WH = int(BUILTIN_PLANS[TIERED].tier_bounds[0] * 1000)


@dataclass(slots=True)
class Tenancy:
    """One account on a meter: who pays, how, and what happens to the account."""

    account_id: str
    role: str
    plan: str
    load: HouseholdLoad
    open_ts: int
    opening_fen: int
    threshold_fen: int | None = None
    auto_fen: int | None = None
    trigger_fen: int = 3000
    extras: dict[str, str] = field(default_factory=dict)
    ytd_wh: int = 0
    events: list[tuple[int, str, dict[str, object]]] = field(default_factory=list)
    close_ts: int | None = None
    bank_fails_once: bool = False
    cut_target: str = ""


@dataclass(slots=True)
class Premises:
    """A flat with one meter (two after a replacement) and one or two tenancies."""

    index: int
    meter_id: str
    cadence: str
    decimals: int
    register_wh: int
    source: bool
    power: bool
    tenancies: list[Tenancy]
    replace: tuple[int, str, int, int] | None = None  # ts, new meter, new initial Wh, decimals
    regression_ts: int | None = None
    bad: dict[int, list[str]] = field(default_factory=dict)


def default_start(seed: int) -> date:
    """First Monday of a month of 2026, the month chosen by the seed."""
    first = date(2026, seed % 12 + 1, 1)
    return first + timedelta(days=(7 - first.weekday()) % 7)


def epoch(day: date) -> int:
    """Epoch second of local midnight starting ``day``."""
    return (day - date(1970, 1, 1)).days * DAY - LOCAL_OFFSET


def assign_roles(households: int, rng: random.Random) -> list[str]:
    """Roles for ``households`` premises: the required ones first, then shares, then steady."""
    roles = list(REQUIRED)
    for role, share in SHARES.items():
        extra = round(households * share) - roles.count(role)
        roles.extend([role] * max(extra, 0))
    roles = roles[:households] + ["steady"] * max(households - len(roles), 0)
    rng.shuffle(roles)
    return roles


def _fen(low: int, high: int, rng: random.Random) -> int:
    """A random whole-yuan amount in [low, high] yuan, in fen."""
    return rng.randint(low, high) * 100


def _load(rng: random.Random, seed: int) -> HouseholdLoad:
    """A household type with a scale that gives roughly 5–15 kWh a day."""
    names = list(PROFILE_SCALES)
    name = rng.choices(names, weights=[PROFILE_SCALES[n][0] for n in names])[0]
    _, low, high = PROFILE_SCALES[name]
    return HouseholdLoad(name, Decimal(rng.randint(low, high)).scaleb(-2), seed)


def _extras(rng: random.Random, tenant: str) -> dict[str, str]:
    """Optional contact fields of an ``open`` event."""
    extras: dict[str, str] = {}
    if rng.random() < 0.7:
        extras["phone"] = f"1{rng.choice('35789')}{rng.randint(0, 999_999_999):09d}"
        extras["locale"] = "en-US" if rng.random() < 0.08 else "zh-CN"
    if rng.random() < 0.6:
        extras["district"] = rng.choice(DISTRICTS)
    if rng.random() < 0.1:
        extras["landlord_id"] = f"L{int(tenant[1:]) % 37 + 1:03d}"
    return extras


def _time_at(day0: int, day: int, rng: random.Random, hours: tuple[int, int], step: int) -> int:
    """A time on local day ``day`` (from day0) between ``hours``, a multiple of ``step`` s."""
    seconds = rng.randrange(hours[0] * 3600, hours[1] * 3600, step)
    return day0 + day * DAY + seconds


def plan_town(households: int, days: int, seed: int, start: date) -> list[Premises]:
    """Plan every premises of the example set."""
    rng = random.Random(f"wattpay-example:{seed}")
    roles = assign_roles(households, rng)
    day0 = epoch(start)
    end = day0 + days * DAY
    counters = {"update": 0, "auto": 0}
    premises = []
    for index, role in enumerate(roles):
        prng = random.Random(f"{seed}:{index}:{role}")
        premises.append(_plan_premises(index, role, prng, day0, end, households, counters))
    return premises


def _plan_premises(
    index: int,
    role: str,
    rng: random.Random,
    day0: int,
    end: int,
    households: int,
    counters: dict[str, int],
) -> Premises:
    """Plan one premises: its meter, first tenancy and any lifecycle events."""
    days = (end - day0) // DAY
    cadence = {"hourly": "hourly", "irregular": "irregular"}.get(role, "15min")
    step = 3600 if cadence == "hourly" else 900
    meter_id = f"M{index + 1:04d}"
    register = rng.randint(300_000, 35_000_000) // 10 * 10
    load = _load(rng, rng.randrange(1 << 30))
    if role == "rollover":
        daily = sum(load.day_wh(date(1970, 1, 1) + timedelta(days=(day0 + LOCAL_OFFSET) // DAY)))
        register = REGISTER_MAX_WH - daily * rng.randint(4, 16) // 10
    open_ts = _time_at(day0, 0, rng, (0, 6), step)
    tenancy = _plan_tenancy(f"A{index + 1:04d}", role, load, open_ts, rng, day0, counters)
    prem = Premises(
        index=index,
        meter_id=meter_id,
        cadence=cadence,
        decimals=3 if rng.random() < 0.3 else 2,
        register_wh=register,
        source=rng.random() < 0.3,
        power=rng.random() < 0.1,
        tenancies=[tenancy],
    )
    mid = max(days // 2, 0)
    if role == "change_plan":
        at = _time_at(day0, mid, rng, (9, 20), 60)
        tenancy.events.append((at, "change_plan", {"plan": TOU}))
    elif role == "update":
        _plan_update(tenancy, rng, day0, days, counters)
    elif role == "auto" and counters["auto"] == 2:
        at = _time_at(day0, max(days * 3 // 4, 1) if days > 1 else 0, rng, (19, 23), 60)
        tenancy.events.append((at, "update", {"auto_topup_amount": None}))
    elif role == "replace":
        at = _time_at(day0, days * 2 // 5, rng, (9, 16), 60) + rng.randint(0, 59)
        prem.replace = (at, f"N{index + 1:04d}", rng.randint(0, 150) * 10, rng.choice((2, 3)))
    elif role == "regression":
        prem.regression_ts = _time_at(day0, mid, rng, (1, 23), 900)
    elif role == "move_out":
        close = _time_at(day0, days * 3 // 5, rng, (9, 20), 60) + rng.randint(0, 59)
        tenancy.close_ts = max(close, open_ts + 3600)
        move_in = _time_at(day0, days * 3 // 5 + rng.randint(1, 2), rng, (9, 13), 900)
        if move_in < end - 6 * 3600:
            new_id = f"A{households + index + 1:04d}"
            new = _plan_tenancy(
                new_id, "steady", _load(rng, rng.randrange(1 << 30)), move_in, rng, day0, counters
            )
            new.extras.pop("ytd_kwh", None)
            prem.tenancies.append(new)
    return prem


def _plan_update(
    tenancy: Tenancy, rng: random.Random, day0: int, days: int, counters: dict[str, int]
) -> None:
    """Give an update household one of: a new phone, a new threshold, auto top-up switched on."""
    kind = counters["update"] % 3
    counters["update"] += 1
    at = _time_at(day0, min(1, days - 1) if days > 1 else 0, rng, (9, 22), 60)
    if kind == 0:
        fields: dict[str, object] = {"phone": f"139{rng.randint(0, 99_999_999):08d}"}
    elif kind == 1:
        fields = {"low_balance_threshold": rng.choice(("30.00", "50.00", "10.00"))}
    else:
        fields = {"auto_topup_amount": "100.00", "low_balance_threshold": "30.00"}
    tenancy.events.append((at, "update", fields))


def _plan_tenancy(
    account_id: str,
    role: str,
    load: HouseholdLoad,
    open_ts: int,
    rng: random.Random,
    day0: int,
    counters: dict[str, int],
) -> Tenancy:
    """Plan one account's opening terms from its role."""
    plan = TIERED if role in TIERED_ONLY or rng.random() < 0.75 else TOU
    tenancy = Tenancy(account_id, role, plan, load, open_ts, 0, extras=_extras(rng, account_id))
    tenancy.trigger_fen = _fen(15, 60, rng)
    opening = rng.choice((0, 50, 100, 100, 150, 200, 200, 300, 500, 800))
    tenancy.opening_fen = opening * 100
    if role == "auto":
        counters["auto"] += 1
        tenancy.threshold_fen = rng.choice((2000, 3000, 5000))
        tenancy.auto_fen = rng.choice((10_000, 20_000, 30_000))
        tenancy.opening_fen = tenancy.threshold_fen + rng.randint(300, 1500)
        tenancy.bank_fails_once = counters["auto"] == 2 or rng.random() < 0.1
    elif role == "rebate":
        tenancy.opening_fen = _fen(0, 150, rng)
    elif role == "arrears":
        tenancy.opening_fen = _fen(5, 25, rng)
    elif role in CUT_ROLES:
        tenancy.cut_target = role if role != "tamper" else rng.choice(("cut_in", "cut_out"))
    elif rng.random() < 0.15:
        tenancy.threshold_fen = rng.choice((1000, 3000, 5000))
    if role == "hourly" or (role not in TIERED_ONLY and rng.random() < 0.25):
        doy = ((open_ts + LOCAL_OFFSET) // DAY - (day0 + LOCAL_OFFSET) // DAY) + _day_of_year(day0)
        ytd = doy * rng.randint(4_000, 14_000)
        if rng.random() < 0.2:
            ytd = FIRST_TIER_WH - rng.randint(5, 60) * 1000
        tenancy.ytd_wh = ytd
        tenancy.extras["ytd_kwh"] = f"{ytd // 1000}.{ytd % 1000:03d}"
    return tenancy


def _day_of_year(day0: int) -> int:
    """Days of the year before local day starting at ``day0``."""
    local = date(1970, 1, 1) + timedelta(days=(day0 + LOCAL_OFFSET) // DAY)
    return local.timetuple().tm_yday - 1


def money_text(fen: int) -> str:
    """Money in fen as a decimal string with 2 decimals."""
    return f"{fen // 100}.{fen % 100:02d}"
