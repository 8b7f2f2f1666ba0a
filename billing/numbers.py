"""Exact decimal parsing and rounding for money, energy and prices (SPEC S3, S14.2)."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")

FEN = Decimal("0.01")
WH = Decimal("0.001")
ZERO = Decimal(0)
ZERO_MONEY = Decimal("0.00")
ZERO_KWH = Decimal("0.000")


class DecimalFormatError(ValueError):
    """A value that must be a decimal string is not one."""


def parse_decimal_text(value: object) -> Decimal:
    """Parse a JSON string of the form ``-?digits[.digits]``; anything else is an error."""
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise DecimalFormatError(f"not a decimal string: {value!r}")
    return Decimal(value)


def decimal_places(value: Decimal) -> int:
    """Count the decimals written in a parsed decimal string (``"1.50"`` has 2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def round_money(value: Decimal) -> Decimal:
    """Round half-up to the fen; ``-0.00`` becomes ``0.00``."""
    rounded = value.quantize(FEN, rounding=ROUND_HALF_UP)
    return rounded if rounded != 0 else ZERO_MONEY


def round_kwh(value: Decimal) -> Decimal:
    """Round half-up to 0.001 kWh."""
    rounded = value.quantize(WH, rounding=ROUND_HALF_UP)
    return rounded if rounded != 0 else ZERO_KWH


def money_text(value: Decimal) -> str:
    """Render money as a 2-decimal string, rounding half-up."""
    return str(round_money(value))


def kwh_text(value: Decimal) -> str:
    """Render energy as a 3-decimal string."""
    return str(round_kwh(value))


def to_milli(value: Decimal) -> int:
    """Energy in whole thousandths of a kWh (values carry at most 3 decimals)."""
    return int(value * 1000)


def from_milli(value: int) -> Decimal:
    """Energy from whole thousandths of a kWh."""
    return Decimal(value).scaleb(-3)


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero, exact for any size (denominator > 0)."""
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((2 * -numerator + denominator) // (2 * denominator))
