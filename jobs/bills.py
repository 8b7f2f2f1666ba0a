"""Monthly bills (月账单, SPEC S15.1–2): one exact row per account × month."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from jobs.money import div_half_up, fen, kwh, month_after
from jobs.tables import PREVIOUS_MONTH, THIS_MONTH, YEAR_AGO

CLOSING_LEDGER = ("charge",)
CLOSING_POINTS = ("daily", "expiry")
ENERGY = ("kwh", "kwh_peak", "kwh_valley", "kwh_tier1", "kwh_tier2", "kwh_tier3")


@dataclass(frozen=True)
class BillInputs:
    """What a month's bills are made of, as read by `jobs.tables` (fen and milli).

    ``daily_usage``: the month's rows. ``ledger`` and ``points``: every entry up to the
    month's end summed per account × kind × bucket (`jobs.tables.month_buckets`: the month,
    the one before, the same month a year before, and earlier). ``usage_before``: kWh of the
    month before and of the same month a year before (`jobs.tables.usage_before`).
    ``earlier_ytd``: the last ``ytd_kwh`` before the month's end of the accounts billed
    without a row in it. ``disconnections``: per account, ``disconnected`` events in it.
    """

    month: date
    daily_usage: pl.DataFrame
    ledger: pl.DataFrame
    points: pl.DataFrame
    usage_before: pl.DataFrame
    earlier_ytd: pl.DataFrame
    accounts: pl.DataFrame
    disconnections: pl.DataFrame
    zone: str


def bill_id(account_id: str, month: date) -> str:
    """``{account_id}:{YYYY-MM}``."""
    return f"{account_id}:{month:%Y-%m}"


def invoice_number(account_id: str, month: date) -> str:
    """A deterministic 20-digit invoice number: YYYYMM and 14 digits of the bill id's digest."""
    digest = int(hashlib.sha256(bill_id(account_id, month).encode("utf-8")).hexdigest(), 16)
    return f"{month:%Y%m}{digest % 10**14:014d}"


def _sum_kind(column: str, *kinds: str) -> pl.Expr:
    return pl.col(column).filter(pl.col("kind").is_in(list(kinds))).sum()


def activity(inputs: BillInputs) -> pl.DataFrame:
    """(account_id, bucket) pairs that get a bill: a daily_usage row, ledger or points entry."""
    return pl.concat(
        [
            inputs.daily_usage.select("account_id", bucket=pl.lit(THIS_MONTH, pl.Int64)),
            inputs.usage_before.select("account_id", "bucket"),
            inputs.ledger.select("account_id", "bucket"),
            inputs.points.select("account_id", "bucket"),
        ]
    ).unique()


def unread_ytd(inputs: BillInputs) -> list[str]:
    """The accounts billed for the month without a ``daily_usage`` row in it (sorted)."""
    billed = activity(inputs).filter(pl.col("bucket") == THIS_MONTH).select("account_id")
    return (
        billed.join(inputs.daily_usage, on="account_id", how="anti")
        .get_column("account_id")
        .sort()
        .to_list()
    )


def _kwh_in(inputs: BillInputs, bucket: int, name: str) -> pl.DataFrame:
    """(account_id, ``name``): kWh of a bucket's month for every account with a bill then."""
    sums = inputs.usage_before.filter(pl.col("bucket") == bucket).select("account_id", "kwh")
    return (
        activity(inputs)
        .filter(pl.col("bucket") == bucket)
        .select("account_id")
        .join(sums, on="account_id", how="left")
        .select("account_id", pl.col("kwh").fill_null(0).alias(name))
    )


def bill_frame(inputs: BillInputs, account: str | None = None) -> pl.DataFrame:
    """One row per account billed for the month: the sums of S15.2 as scaled integers."""
    ledger, points = inputs.ledger, inputs.points
    in_month = pl.col("bucket") == THIS_MONTH
    earlier = pl.col("bucket") < THIS_MONTH
    ids = activity(inputs).filter(in_month).select("account_id")
    if account is not None:
        ids = ids.filter(pl.col("account_id") == account)
    month_rows = inputs.daily_usage.sort("day")
    usage = month_rows.group_by("account_id").agg(
        pl.len().alias("days"),
        *(pl.col(c).sum() for c in (*ENERGY, "charge")),
    )
    last_ytd = pl.concat(
        [
            month_rows.group_by("account_id").agg(pl.col("ytd_kwh").last()),
            inputs.earlier_ytd.select("account_id", "ytd_kwh"),
        ]
    ).unique("account_id", keep="first", maintain_order=True)
    money = (
        ledger.filter(in_month)
        .group_by("account_id")
        .agg(
            _sum_kind("amount", "topup").alias("topups"),
            _sum_kind("entries", "topup").alias("topup_count"),
            _sum_kind("amount", "rebate").alias("rebates"),
            _sum_kind("amount", "points_redemption").alias("points_redeemed_yuan"),
            (-_sum_kind("amount", "refund")).alias("refund"),
        )
    )
    before = (
        ledger.filter(earlier)
        .group_by("account_id")
        .agg(pl.col("amount").sum().alias("ledger_before"))
    )
    pts = (
        points.filter(in_month)
        .group_by("account_id")
        .agg(
            _sum_kind("points", "basic", "daily").alias("points_earned"),
            (-_sum_kind("points", "redemption")).alias("points_redeemed"),
            (-_sum_kind("points", "expiry")).alias("points_expired"),
        )
    )
    pts_before = (
        points.filter(earlier)
        .group_by("account_id")
        .agg(pl.col("points").sum().alias("points_opening"))
    )
    cuts = inputs.disconnections.select("account_id", disconnections="events")
    prev = _kwh_in(inputs, PREVIOUS_MONTH, "kwh_prev_month")
    last_year = _kwh_in(inputs, YEAR_AGO, "kwh_same_month_last_year")
    frame = ids
    for part in (usage, last_ytd, money, before, pts, pts_before, cuts, prev, last_year):
        frame = frame.join(part, on="account_id", how="left")
    frame = frame.join(
        inputs.accounts.select("account_id", "meter_id", "plan", "opening_balance"),
        on="account_id",
        how="left",
    )
    zeros = [
        "days",
        *ENERGY,
        "charge",
        "ytd_kwh",
        "topups",
        "topup_count",
        "rebates",
        "points_redeemed_yuan",
        "refund",
        "ledger_before",
        "points_earned",
        "points_redeemed",
        "points_expired",
        "points_opening",
        "disconnections",
        "opening_balance",
    ]
    return frame.with_columns(pl.col(c).fill_null(0) for c in zeros).sort("account_id")


def tier_position(ytd_milli: int, bounds_milli: Sequence[int]) -> tuple[int, int | None]:
    """(tier 1–3 at a year-to-date cumulative, kWh to the next tier or None in the top tier).

    Tier k covers cumulative kWh in (bound[k-1], bound[k]]; 0 kWh is in tier 1.
    """
    for index, bound in enumerate(bounds_milli):
        if ytd_milli <= bound:
            return index + 1, bound - ytd_milli
    return len(bounds_milli) + 1, None


def bill_rows(
    frame: pl.DataFrame,
    month: date,
    bounds: Mapping[str, Sequence[int]],
    generated_at: datetime,
) -> list[dict[str, Any]]:
    """The ``bills`` rows (S15.2) of a `bill_frame`, in exact decimals."""
    rows = []
    for r in frame.iter_rows(named=True):
        opening = r["opening_balance"] + r["ledger_before"]
        closing = (
            opening
            + r["topups"]
            + r["rebates"]
            + r["points_redeemed_yuan"]
            - r["charge"]
            - r["refund"]
        )
        plan = r["plan"] or ""
        tier, to_next = tier_position(r["ytd_kwh"], bounds.get(plan, ()))
        earned, redeemed, expired = r["points_earned"], r["points_redeemed"], r["points_expired"]
        charge, energy = r["charge"], r["kwh"]
        aid = r["account_id"]
        rows.append(
            {
                "bill_id": bill_id(aid, month),
                "account_id": aid,
                "month": month,
                "meter_id": r["meter_id"] or "",
                "plan": plan,
                "days": r["days"],
                **{c: kwh(r[c]) for c in ENERGY},
                "charge": fen(charge),
                "topups": fen(r["topups"]),
                "topup_count": r["topup_count"],
                "rebates": fen(r["rebates"]),
                "points_redeemed_yuan": fen(r["points_redeemed_yuan"]),
                "refund": fen(r["refund"]),
                "opening_balance": fen(opening),
                "closing_balance": fen(closing),
                "points_opening": r["points_opening"],
                "points_earned": earned,
                "points_redeemed": redeemed,
                "points_expired": expired,
                "points_closing": r["points_opening"] + earned - redeemed - expired,
                "ytd_kwh": kwh(r["ytd_kwh"]),
                "tier": tier,
                "kwh_to_next_tier": None if to_next is None else kwh(to_next),
                # charge (fen) ÷ kWh (milli) in 1/10000 yuan per kWh: fen × 10 × 10⁴ ÷ milli.
                "avg_price": (
                    Decimal(div_half_up(charge * 100_000, energy)).scaleb(-4) if energy else None
                ),
                "kwh_prev_month": _maybe_kwh(r["kwh_prev_month"]),
                "kwh_same_month_last_year": _maybe_kwh(r["kwh_same_month_last_year"]),
                "disconnections": r["disconnections"],
                "invoice_no": invoice_number(aid, month) if charge > 0 else None,
                "generated_at": generated_at,
            }
        )
    return rows


def _maybe_kwh(milli: int | None) -> Decimal | None:
    return None if milli is None else kwh(milli)


def daily_kwh(daily_usage: pl.DataFrame, month: date) -> dict[str, list[int]]:
    """Per account, kWh (milli) of each day of ``month`` (0 where it has no row), for charts."""
    days = (month_after(month) - month).days
    series: dict[str, list[int]] = {}
    rows = daily_usage.filter(
        (pl.col("day") >= month) & (pl.col("day") < month_after(month))
    ).select("account_id", "day", "kwh")
    for aid, day, milli in rows.iter_rows():
        series.setdefault(aid, [0] * days)[(day - month).days] = milli
    return series
