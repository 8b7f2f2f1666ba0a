"""The month's usage analysis on the household page (SPEC S15.3, S17.2).

Read from what the monthly job wrote: ``usage_analysis`` (peak share, the other plan's
charge) beside the month's bill (last month's and last year's kWh). Until the job has run
for the account there is none, and the page says so.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from web.reads import Reader

PERCENT = Decimal("0.01")


def change_percent(now: Decimal, before: Decimal | None) -> Decimal | None:
    """``now`` against ``before`` in percent, two decimals half-up; None without a base."""
    if before is None or before == 0:
        return None
    return ((now - before) * 100 / before).quantize(PERCENT, ROUND_HALF_UP)


def usage_analysis(reader: Reader, account_id: str) -> dict[str, Any] | None:
    """The latest month analysed for the account, or None."""
    if not reader.has_table("usage_analysis") or not reader.has_table("bills"):
        return None
    row = reader.one(
        "SELECT u.month AS month, u.kwh AS kwh, u.peak_share AS peak_share, u.plan AS plan, "
        "u.charge AS charge, u.alt_plan AS alt_plan, u.alt_charge AS alt_charge, "
        "b.kwh_peak AS kwh_peak, b.kwh_valley AS kwh_valley, "
        "b.kwh_prev_month AS kwh_prev_month, "
        "b.kwh_same_month_last_year AS kwh_last_year "
        "FROM (SELECT * FROM usage_analysis FINAL WHERE account_id = {account_id:String} "
        "ORDER BY month DESC LIMIT 1) AS u "
        "LEFT JOIN (SELECT * FROM bills FINAL WHERE account_id = {account_id:String}) AS b "
        "ON b.month = u.month",
        account_id=account_id,
    )
    if row is None:
        return None
    share = row["peak_share"]
    alt_plan = row["alt_plan"] or None
    return {
        "month": row["month"],
        "kwh": row["kwh"],
        "kwh_prev_month": row["kwh_prev_month"],
        "change_prev_month_percent": change_percent(row["kwh"], row["kwh_prev_month"]),
        "kwh_last_year": row["kwh_last_year"],
        "change_last_year_percent": change_percent(row["kwh"], row["kwh_last_year"]),
        "kwh_peak": row["kwh_peak"],
        "kwh_valley": row["kwh_valley"],
        "peak_share_percent": None if share is None else (share * 100).quantize(PERCENT),
        "plan": row["plan"],
        "charge": row["charge"],
        "alt_plan": alt_plan,
        "alt_charge": row["alt_charge"] if alt_plan else None,
        "alt_difference": row["alt_charge"] - row["charge"] if alt_plan else None,
    }
