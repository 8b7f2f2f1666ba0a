"""What a household sees (SPEC S17.2): balance, status, days left, usage, tiers, money, points."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from billing.clock import LOCAL_ZONE
from billing.tariffs import Plan, plan_catalog
from config.notify import TYPES as NOTIFICATION_TYPES
from web.points import point_lots
from web.reads import Reader

# Columns a newer migration may add to `accounts` (S8); read when present.
OPTIONAL_ACCOUNT_COLUMNS = ("opening_balance", "landlord_id", "locale", "district")
DAYS_LEFT_CHARGES = 7
CHART_DAYS = 30
FEN = Decimal("0.01")


def account(
    reader: Reader, account_id: str, plans: Mapping[str, Plan] | None = None
) -> dict[str, Any] | None:
    """The account's latest state (``accounts FINAL``) with days left and its profile.

    ``plans`` is the configured catalogue (built-in plans when None), for the price now and
    the tier position.
    """
    present = reader.columns("accounts")
    # Column names come from the fixed tuple above, never from a request.
    extra = "".join(f", {c}" for c in OPTIONAL_ACCOUNT_COLUMNS if c in present)
    row = reader.one(
        "SELECT account_id, meter_id, plan, status, balance, available, overdraft_limit, "
        f"points, ytd_kwh, updated_at{extra} FROM accounts FINAL "
        "WHERE account_id = {account_id:String}",
        account_id=account_id,
    )
    if row is None:
        return None
    row.update({k: v for k, v in profile(reader, account_id).items() if not row.get(k)})
    row["locale"] = row.get("locale") or "zh-CN"
    row["today"] = local_day(row["updated_at"])
    row["days_left"] = days_left(reader, account_id, row["available"])
    row["tier_position"] = tier_position(row["plan"], row["ytd_kwh"], plans)
    row["price_now"] = price_now(row["plan"], row["ytd_kwh"], row["updated_at"], plans)
    return row


def local_day(moment: datetime) -> date:
    """The local (Asia/Shanghai) date of a timestamp."""
    return moment.astimezone(LOCAL_ZONE).date()


def profile(reader: Reader, account_id: str) -> dict[str, Any]:
    """Locale, district, landlord and phone from the applied ``open``/``update`` events.

    Read from ``account_events`` (S8) when that table exists; empty otherwise.
    """
    if not reader.has_table("account_events"):
        return {}
    found: dict[str, Any] = {}
    for row in reader.rows(
        "SELECT type, payload FROM account_events FINAL "
        "WHERE account_id = {account_id:String} AND type IN ('open', 'update') ORDER BY ts",
        account_id=account_id,
    ):
        try:
            payload = json.loads(row["payload"])
        except ValueError:
            continue
        for key in ("locale", "district", "landlord_id", "opening_balance"):
            if isinstance(payload, dict) and payload.get(key) is not None:
                found[key] = payload[key]
    return found


def days_left(reader: Reader, account_id: str, available: Decimal) -> int | None:
    """S14.13: floor(available × k ÷ sum of the last k posted charges), k = min(7, n)."""
    rows = reader.rows(
        "SELECT amount FROM ledger FINAL WHERE account_id = {account_id:String} "
        "AND kind = 'charge' ORDER BY seq DESC LIMIT {k:UInt32}",
        account_id=account_id,
        k=DAYS_LEFT_CHARGES,
    )
    spent = -sum((r["amount"] for r in rows), Decimal(0))
    if not rows or spent <= 0:
        return None
    return max(int((available * len(rows) / spent).to_integral_value(ROUND_DOWN)), 0)


def price_now(
    plan_id: str, ytd_kwh: Decimal, moment: datetime, plans: Mapping[str, Plan] | None = None
) -> dict[str, Any] | None:
    """The price of the next kWh at ``moment`` (the account's clock): its tier and period (S4).

    None for a plan the catalogue (``plans``, else the built-in one) does not know.
    """
    plan = (plan_catalog() if plans is None else plans).get(plan_id)
    if plan is None:
        return None
    index = plan.tier_of(ytd_kwh)
    period = plan.period_at(moment.astimezone(LOCAL_ZONE))
    return {"tier": index + 1, "period": period, "price": plan.prices[period][index], "at": moment}


def tier_position(
    plan_id: str, ytd_kwh: Decimal, plans: Mapping[str, Plan] | None = None
) -> dict[str, Any]:
    """Where the year's consumption stands among the plan's tiers (S4)."""
    plan = (plan_catalog() if plans is None else plans).get(plan_id)
    if plan is None:
        return {"tier": None, "bounds": [], "kwh_to_next_tier": None, "ytd_kwh": ytd_kwh}
    index = plan.tier_of(ytd_kwh)  # 0-based
    bounds = list(plan.tier_bounds)
    tier = index + 1
    nxt = bounds[index] - ytd_kwh if index < len(bounds) else None
    top = bounds[-1] * Decimal("1.25") if bounds else ytd_kwh
    return {
        "tier": tier,
        "bounds": bounds,
        "kwh_to_next_tier": nxt,
        "ytd_kwh": ytd_kwh,
        "scale_kwh": max(top, ytd_kwh),
    }


def daily(reader: Reader, account_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """Closed days (``daily_usage FINAL``) from ``first`` to ``last`` inclusive."""
    return reader.rows(
        "SELECT day, kwh, kwh_peak, kwh_valley, kwh_tier1, kwh_tier2, kwh_tier3, charge, "
        "ytd_kwh, closing_balance FROM daily_usage FINAL "
        "WHERE account_id = {account_id:String} AND day BETWEEN {first:Date} AND {last:Date} "
        "ORDER BY day",
        account_id=account_id,
        first=first,
        last=last,
    )


def chart_window(summary: dict[str, Any], days: int = CHART_DAYS) -> tuple[date, date]:
    """The days a chart of the account shows: ``days`` days up to the latest that can be closed.

    That is yesterday (the account's local day of ``updated_at`` minus one) for an open
    account, and the day it closed for a closed one (its last day closes at the close, S5).
    """
    last = summary["today"]
    if summary["status"] != "closed":
        last -= timedelta(days=1)
    return last - timedelta(days=days - 1), last


def chart_days(rows: list[dict[str, Any]], last: date, days: int = CHART_DAYS) -> list[dict]:
    """One entry per day of the window ending ``last`` (None where no day has closed)."""
    by_day = {r["day"]: r for r in rows}
    window = [last - timedelta(days=days - 1 - i) for i in range(days)]
    return [
        {"day": d, "tick": d.strftime("%m-%d"), "kwh": by_day[d]["kwh"] if d in by_day else None}
        for d in window
    ]


def month(reader: Reader, account_id: str, today: date) -> dict[str, Any]:
    """The month so far by tier and by period, and what it has cost (`month_to_date_cost`)."""
    first = today.replace(day=1)
    rows = reader.rows(
        "SELECT tier, period, sum(kwh) AS kwh FROM intervals FINAL "
        "WHERE account_id = {account_id:String} "
        "AND toDate(start, 'Asia/Shanghai') BETWEEN {first:Date} AND {today:Date} "
        "GROUP BY tier, period ORDER BY tier, period",
        account_id=account_id,
        first=first,
        today=today,
    )
    tiers: dict[int, Decimal] = {}
    periods: dict[str, Decimal] = {}
    for r in rows:
        tiers[int(r["tier"])] = tiers.get(int(r["tier"]), Decimal(0)) + r["kwh"]
        periods[r["period"]] = periods.get(r["period"], Decimal(0)) + r["kwh"]
    return {
        "month": first,
        "kwh": sum(tiers.values(), Decimal(0)),
        "cost": month_to_date_cost(reader, account_id, today),
        "by_tier": [{"tier": t, "kwh": k} for t, k in sorted(tiers.items())],
        "by_period": [{"period": p, "kwh": k} for p, k in sorted(periods.items())],
    }


def month_to_date_cost(reader: Reader, account_id: str, today: date) -> Decimal:
    """What the month has cost up to ``today``: the month's bill so far (S3, S5, S15.2).

    The bill sums the closed days' posted charges (``daily_usage.charge``); a day not closed
    yet adds its accrued cost, rounded once to the fen as its charge will be when it closes.
    """
    rows = reader.rows(
        "SELECT day, charge AS amount, 1 AS closed FROM daily_usage FINAL "
        "WHERE account_id = {account_id:String} AND day BETWEEN {first:Date} AND {today:Date} "
        "UNION ALL SELECT toDate(start, 'Asia/Shanghai') AS day, sum(cost) AS amount, "
        "0 AS closed FROM intervals FINAL WHERE account_id = {account_id:String} "
        "AND toDate(start, 'Asia/Shanghai') BETWEEN {first:Date} AND {today:Date} GROUP BY day",
        account_id=account_id,
        first=today.replace(day=1),
        today=today,
    )
    closed = {r["day"]: Decimal(r["amount"]) for r in rows if r["closed"]}
    accrued = {r["day"]: Decimal(r["amount"]) for r in rows if not r["closed"]}
    total = sum(closed.values(), Decimal("0.00"))
    for day, cost in accrued.items():
        if day not in closed:
            total += cost.quantize(FEN, ROUND_HALF_UP)
    return total.quantize(FEN)


def credits(reader: Reader, account_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Latest money movements other than daily charges: top-ups, rebates, redemptions, refunds."""
    return reader.rows(
        "SELECT ts, kind, amount, balance_after, ref FROM ledger FINAL "
        "WHERE account_id = {account_id:String} AND kind != 'charge' "
        "ORDER BY seq DESC LIMIT {limit:UInt32}",
        account_id=account_id,
        limit=limit,
    )


HISTORY_DAYS = 90
HISTORY_LIMIT = 200
# What happened to an account, in the notifications the household was sent (S7, S16).
HISTORY_TYPES = NOTIFICATION_TYPES


def history(reader: Reader, account_id: str, today: date) -> list[dict[str, Any]]:
    """Notifications and point expiries of the last `HISTORY_DAYS` days up to ``today``.

    Newest first, at most `HISTORY_LIMIT`; each entry has ``ts``, ``type`` and ``data`` (a
    notification's fields; an expiry's points).
    """
    first = today - timedelta(days=HISTORY_DAYS - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=LOCAL_ZONE)
    rows = reader.rows(
        "SELECT * FROM (SELECT event_id AS id, ts, toString(type) AS type, data FROM events "
        "FINAL WHERE account_id = {account_id:String} AND type IN {types:Array(String)} "
        "AND ts >= {since:DateTime64(3, 'Asia/Shanghai')} "
        "UNION ALL SELECT toString(seq) AS id, ts, 'points_expired' AS type, "
        "toString(-points) AS data FROM points_ledger FINAL "
        "WHERE account_id = {account_id:String} AND kind = 'expiry' "
        "AND ts >= {since:DateTime64(3, 'Asia/Shanghai')}) "
        "ORDER BY ts DESC, id DESC LIMIT {limit:UInt32}",
        account_id=account_id,
        types=list(HISTORY_TYPES),
        since=since,
        limit=HISTORY_LIMIT,
    )
    out = []
    for r in rows:
        if r["type"] == "points_expired":
            data: Any = {"points": int(r["data"])}
        else:
            try:
                data = json.loads(r["data"]) if r["data"] else {}
            except ValueError:
                data = {}
        out.append(
            {"ts": r["ts"], "type": r["type"], "data": data if isinstance(data, dict) else {}}
        )
    return out


def points(reader: Reader, account_id: str) -> dict[str, Any]:
    """Points entries, the lots still held by year and when each expires (S6)."""
    entries = reader.rows(
        "SELECT ts, kind, points, balance_after FROM points_ledger FINAL "
        "WHERE account_id = {account_id:String} ORDER BY seq",
        account_id=account_id,
    )
    return {
        "balance": entries[-1]["balance_after"] if entries else 0,
        "lots": point_lots(entries),
        "recent": list(reversed(entries[-10:])),
    }


def household(
    reader: Reader, account_id: str, plans: Mapping[str, Plan] | None = None
) -> dict[str, Any] | None:
    """Everything on the household page (``plans``: see `account`)."""
    from web.analysis import usage_analysis
    from web.documents import bills

    summary = account(reader, account_id, plans)
    if summary is None:
        return None
    today = summary["today"]
    first, last = chart_window(summary)
    rows = daily(reader, account_id, first, last)
    return {
        "account": summary,
        "daily": rows,
        "chart": chart_days(rows, last),
        "month": month(reader, account_id, today),
        "credits": credits(reader, account_id),
        "points": points(reader, account_id),
        "bills": bills(reader, account_id),
        "analysis": usage_analysis(reader, account_id),
        "history": history(reader, account_id, today),
    }
