"""Exact decimal parsing and rounding for money, energy and prices (SPEC S3, S14.2)."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from billing.excerpt import excerpt

_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# The plausible range of input amounts, energies and points (docs/billing-rules.md
# "Plausible ranges"): |value| < LIMIT. The ClickHouse columns hold |x| < 10^16 (money,
# Decimal(18, 2)) and < 10^15 (energy, Decimal(18, 3)); inputs stay three orders of
# magnitude below, so sums of them (balances, year-to-date energy) still fit.
MONEY_LIMIT = Decimal(10) ** 12
ENERGY_LIMIT = Decimal(10) ** 12
POINTS_LIMIT = 10**12
PLAIN_ENERGY = re.compile(r"[0-9]{1,12}(\.[0-9]{1,3})?")
"""A non-negative energy of at most 3 decimals below ENERGY_LIMIT: valid without more checks."""
# Longest decimal string read at all: a 12-digit integer part, a sign and 3 decimals fit in 17;
# longer strings (leading zeros, many decimals) are still parsed up to this length.
TEXT_LIMIT = 64

FEN = Decimal("0.01")
WH = Decimal("0.001")
ZERO = Decimal(0)
ZERO_MONEY = Decimal("0.00")
ZERO_KWH = Decimal("0.000")


class DecimalFormatError(ValueError):
    """A value that must be a decimal string is not one."""


def parse_decimal_text(value: object, limit: Decimal) -> Decimal:
    """Parse a JSON string ``-?digits[.digits]`` with ``|value| < limit``; else an error.

    ``"-0"`` reads as 0. Strings longer than ``TEXT_LIMIT`` are refused before parsing.
    """
    if not isinstance(value, str) or len(value) > TEXT_LIMIT or not _DECIMAL_TEXT.fullmatch(value):
        raise DecimalFormatError(f"not a decimal string: {excerpt(value)}")
    parsed = Decimal(value)
    if not parsed.copy_abs() < limit:
        raise DecimalFormatError(f"{excerpt(value)} is outside the plausible range (±{limit:,})")
    return parsed.copy_abs() if parsed.is_zero() else parsed


def check_points(value: int) -> int:
    """Points (a JSON integer) within the plausible range; else DecimalFormatError."""
    if not -POINTS_LIMIT < value < POINTS_LIMIT:
        raise DecimalFormatError(f"{excerpt(value)} is outside the plausible range")
    return value


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


def packed_milli(energy: int | str) -> int:
    """A packed register in 0.001 kWh; what was packed before readings held ints is its text."""
    return energy if isinstance(energy, int) else to_milli(Decimal(energy))


def to_fen(value: Decimal) -> int:
    """Money in whole fen (values carry at most 2 decimals)."""
    return int(value.scaleb(2))


def from_fen(value: int) -> Decimal:
    """Money from whole fen, with 2 decimals."""
    return Decimal(value).scaleb(-2)


def from_milli(value: int) -> Decimal:
    """Energy from whole thousandths of a kWh."""
    return Decimal(value).scaleb(-3)


COST_PLACES = 7
"""Exact cost is kept in integer units of 10^-7 yuan: 0.001 kWh × a price of 0.0001 yuan/kWh."""


def from_cost(units: int) -> Decimal:
    """Exact cost from integer units of 10^-7 yuan (the ``intervals.cost`` scale)."""
    return Decimal(units).scaleb(-COST_PLACES)


def to_cost(value: Decimal) -> int:
    """Money in whole units of 10^-7 yuan: the greatest number of them not above ``value``.

    Exact for every balance: every amount wattpay posts is whole fen (inputs and a
    configured rebate are checked to have at most 2 decimals). A finer value, which nothing
    makes, is taken at its floor rather than stop the flow.
    """
    numerator, denominator = value.as_integer_ratio()
    return (numerator * 10**COST_PLACES) // denominator


@lru_cache(maxsize=1 << 16)  # limits: 10.00 … 100.00 by default, 9,001 values
def cost_ceiling(value: Decimal) -> int:
    """The least whole number of 10^-7 yuan not below ``value``, whatever its decimals.

    For an int ``a`` of 10^-7 yuan, ``a >= value`` and ``a < value`` are exactly
    ``a >= cost_ceiling(value)`` and ``a < cost_ceiling(value)``. Remembered: thresholds
    and overdraft limits repeat across accounts and messages.
    """
    numerator, denominator = value.as_integer_ratio()
    return -((-numerator * 10**COST_PLACES) // denominator)


@lru_cache(maxsize=1 << 16)
def cost_floor(value: Decimal) -> int:
    """``to_cost`` remembered, for limits: ``-cost_ceiling(-value)``.

    For an int ``a``, ``a < -value`` is exactly ``a < -cost_floor(value)``, without making
    the Decimal ``-value`` (and hashing it) each time.
    """
    return to_cost(value)


def to_price_units(price: Decimal) -> int:
    """A price (yuan/kWh, at most 4 decimals) in whole units of 10^-4 yuan; else ValueError."""
    units = price.scaleb(4)
    if units != units.to_integral_value():
        raise ValueError(f"a price has at most 4 decimals: {price}")
    return int(units)


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero, exact for any size (denominator > 0)."""
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((2 * -numerator + denominator) // (2 * denominator))
