"""Fixed-point formats: a word width, a binary point and a signedness.

A value in format ``Format(w, f, signed)`` is stored as an integer ``raw`` of ``w`` bits and means
``raw * 2**-f``. ``f`` may be negative (the binary point lies left of the word: coarse, wide range)
or larger than ``w`` (the point lies right of the word: fine, narrow range), as dynamic fixed point
moves the point freely while the word width stays put.

Text form: ``s16.8`` is signed, 16 bits, 8 of them fractional; ``u8.0`` an unsigned byte;
``s8.-2`` counts in steps of 4.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from fxp.errors import FxpError

_TEXT = re.compile(r"^\s*([su])(\d+)\.(-?\d+)\s*$")


def _check_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    # bool is an int subclass, and 3.0 or numpy ints sneak in from config files: be strict but clear.
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "__index__") and not isinstance(value, bool):
            value = value.__index__()
        else:
            raise FxpError(f"{name} must be a whole number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise FxpError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


@dataclass(frozen=True)
class Format:
    """A fixed-point format.

    Parameters
    ----------
    word_bits:
        Stored bits, sign included: 1..64 for signed formats, 1..63 for unsigned ones (raw values
        live in int64 tensors, so an unsigned 64-bit word would not fit).
    frac_bits:
        Position of the binary point: the value is ``raw * 2**-frac_bits``. Any integer.
    signed:
        Two's complement if true, else unsigned.

    Members
    -------
    int_bits, raw_min, raw_max, min, max, resolution, dtype
    """

    word_bits: int
    frac_bits: int
    signed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "signed", bool(self.signed))
        hi = 64 if self.signed else 63
        object.__setattr__(self, "word_bits", _check_int("word_bits", self.word_bits, 1, hi))
        object.__setattr__(self, "frac_bits", _check_int("frac_bits", self.frac_bits))

    @classmethod
    def parse(cls, text: str | Format) -> Format:
        """``"s16.8"`` → ``Format(16, 8, True)``; a Format passes through."""
        if isinstance(text, Format):
            return text
        m = _TEXT.match(str(text))
        if not m:
            raise FxpError(
                f"format {text!r} is not of the form s<word>.<frac> or u<word>.<frac> (e.g. s16.8, u8.0, s8.-2)"
            )
        return cls(int(m.group(2)), int(m.group(3)), m.group(1) == "s")

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.word_bits}.{self.frac_bits}"

    @property
    def int_bits(self) -> int:
        """Bits left of the binary point, sign bit included (may be negative)."""
        return self.word_bits - self.frac_bits

    @property
    def raw_min(self) -> int:
        return -(1 << (self.word_bits - 1)) if self.signed else 0

    @property
    def raw_max(self) -> int:
        return (1 << (self.word_bits - 1 if self.signed else self.word_bits)) - 1

    @property
    def resolution(self) -> float:
        return math.ldexp(1.0, -self.frac_bits)

    @property
    def min(self) -> float:
        return math.ldexp(float(self.raw_min), -self.frac_bits)

    @property
    def max(self) -> float:
        """Largest value, as the nearest float (exact up to 53-bit words)."""
        return math.ldexp(float(self.raw_max), -self.frac_bits)

    @property
    def dtype(self) -> torch.dtype:
        """The narrowest signed torch integer dtype that holds every raw value."""
        bits = self.word_bits + (0 if self.signed else 1)
        for limit, dt in ((8, torch.int8), (16, torch.int16), (32, torch.int32)):
            if bits <= limit:
                return dt
        return torch.int64

    def with_frac(self, frac_bits: int) -> Format:
        """Same word and signedness, binary point moved: what a dynamic scale does."""
        return Format(self.word_bits, frac_bits, self.signed)


def as_format(fmt: Format | str) -> Format:
    """Accept a Format or its text form wherever a format is asked for."""
    if isinstance(fmt, (Format, str)):
        return Format.parse(fmt)
    raise FxpError(f"format must be a fxp.Format or a string like 's16.8', got {type(fmt).__name__}")
