"""Exact conversions between the jobs' scaled integers and decimals (SPEC S3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal


def fen(value: int) -> Decimal:
    """Fen (0.01 yuan) as a 2-decimal amount."""
    return Decimal(value).scaleb(-2)


def kwh(milli: int) -> Decimal:
    """Thousandths of a kWh as a 3-decimal energy."""
    return Decimal(milli).scaleb(-3)


def div_half_up(numerator: int, denominator: int) -> int:
    """Round numerator ÷ denominator half away from zero, on integers only."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


def month_after(month: date) -> date:
    """The first day of the next month."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_before(month: date, months: int = 1) -> date:
    """The first day of the month ``months`` before."""
    index = month.year * 12 + month.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)
