"""Arithmetic on values as the decimals they print as.

Sources report decimal prices (100.02), which binary floats only approximate: the float
mean of 100.00 and 100.02 is 100.00999999999999. Reconciliation therefore computes on
`Decimal(repr(value))`, the shortest decimal that reads back as the same float, and
converts the result to the nearest float once. That gives 100.01, makes a value exactly
on a tolerance compare as on it, and makes sums exact, hence independent of order.

Every operation goes through `EXACT`, never the thread's current decimal context, so no
caller setting can change a result.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from decimal import Decimal

# A double's shortest repr spans 1e-324 .. 1.8e308 with 17 significant digits, so any
# sum of them is exact within 700 digits; 1000 leaves room for the digit count of n.
EXACT = decimal.Context(prec=1000, rounding=decimal.ROUND_HALF_EVEN)
_HALF_UP = decimal.Context(prec=1000, rounding=decimal.ROUND_HALF_UP)


def as_decimal(value: float) -> Decimal:
    """The shortest decimal that reads back as `value` (e.g. 100.01, not 100.0099999...)."""
    return Decimal(repr(value))


def to_float(value: Decimal) -> float:
    """Nearest float, with -0.0 turned into 0.0 so equal values encode alike."""
    return float(value) + 0.0


def decimal_median(ordered: Sequence[Decimal]) -> Decimal:
    """Median of sorted values; an even count gives the mean of the middle two."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return EXACT.divide(EXACT.add(ordered[middle - 1], ordered[middle]), 2)


def decimal_mean(values: Sequence[Decimal]) -> Decimal:
    """Arithmetic mean; the sum is exact, so the result does not depend on the order."""
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return EXACT.divide(total, len(values))


def relative_distance_exceeds(value: Decimal, reference: Decimal, limit: float, unit: int) -> bool:
    """True when |value - reference| x unit > limit x |reference|.

    `unit` is 10 000 for a limit in basis points, 100 for percent. Multiplying instead of
    dividing keeps a reference of 0 meaningful: any other value is infinitely far from it.
    """
    distance = EXACT.multiply(EXACT.subtract(value, reference).copy_abs(), unit)
    return distance > EXACT.multiply(as_decimal(limit), reference.copy_abs())


def round_half_up(value: Decimal, precision: int) -> Decimal:
    """`value` at `precision` decimal places, ties away from zero (2.675 -> 2.68)."""
    return _HALF_UP.quantize(value, Decimal((0, (1,), -precision)))
