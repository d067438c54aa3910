"""Exact, slow, obviously-correct references: Python fractions and big integers, one value at a time."""

from __future__ import annotations

import math
from fractions import Fraction

from fxp import Format


def round_fraction(v: Fraction, rounding: str) -> int:
    fl = math.floor(v)
    rem = v - fl
    half = Fraction(1, 2)
    if rounding == "floor":
        return fl
    if rounding == "ceil":
        return fl + (rem > 0)
    if rounding == "toward_zero":
        return fl + (rem > 0 and v < 0)
    if rounding == "nearest_up":
        return fl + (rem >= half)
    if rounding == "nearest_away":
        return fl + (rem > half or (rem == half and v > 0))
    if rounding == "nearest_even":
        return fl + (rem > half or (rem == half and fl % 2 == 1))
    raise ValueError(rounding)


def fit(v: int, fmt: Format, overflow: str) -> tuple[int, bool]:
    if fmt.raw_min <= v <= fmt.raw_max:
        return v, False
    if overflow == "saturate":
        return max(fmt.raw_min, min(fmt.raw_max, v)), True
    w = v % (1 << fmt.word_bits)
    if fmt.signed and w > fmt.raw_max:
        w -= 1 << fmt.word_bits
    return w, True


def quantize_value(x: float | Fraction, fmt: Format, rounding: str, overflow: str) -> tuple[int, bool]:
    """The raw integer of ``x`` in ``fmt`` and whether it overflowed."""
    if isinstance(x, float) and math.isinf(x):
        assert overflow == "saturate"
        return (fmt.raw_max if x > 0 else fmt.raw_min), True
    v = Fraction(x) * Fraction(2) ** fmt.frac_bits
    return fit(round_fraction(v, rounding), fmt, overflow)
