"""Rounding and overflow: the two decisions every narrowing of a fixed-point value makes.

Rounding modes (what happens to bits below the new binary point):

============== =========================================== ===================
name           rule                                        APyTypes name
============== =========================================== ===================
nearest_even   to nearest, ties to even (IEEE default)     TIES_EVEN
nearest_away   to nearest, ties away from zero             TIES_AWAY
nearest_up     to nearest, ties toward +inf (add half,     TIES_POS
               shift: the cheapest in hardware)
floor          toward -inf (plain arithmetic shift)        TO_NEG
ceil           toward +inf                                 TO_POS
toward_zero    truncate the magnitude                      TO_ZERO
stochastic     up with probability equal to the dropped    (none shared)
               fraction; reproducible from a generator
============== =========================================== ===================

Overflow modes (what happens when the rounded value does not fit the word): ``saturate`` clamps to
the nearest representable value; ``wrap`` keeps the low ``word_bits`` bits, as two's complement
hardware does.

This module holds the integer kernels: a rounding right shift of raw integers and the fit of
integers into a word. Both work in place on a private copy and avoid extra passes: the data range is
read once and tells whether an add-then-shift trick has headroom and whether anything overflows
(rounding is monotonic, so the rounded range is the rounding of the range).
"""

from __future__ import annotations

from typing import Callable

import torch

from fxp.errors import FxpError
from fxp.format import Format

ROUNDING = ("nearest_even", "nearest_away", "nearest_up", "floor", "ceil", "toward_zero", "stochastic")
OVERFLOW = ("saturate", "wrap")

_INT_LIMITS = {torch.int8: 7, torch.int16: 15, torch.int32: 31, torch.int64: 63}


def check_modes(rounding: str, overflow: str) -> None:
    if rounding not in ROUNDING:
        raise FxpError(f"rounding={rounding!r} is not a rounding mode; use one of {', '.join(ROUNDING)}")
    if overflow not in OVERFLOW:
        raise FxpError(f"overflow={overflow!r} is not an overflow mode; use one of {', '.join(OVERFLOW)}")


def shift_round_int(v: int, d: int, rounding: str) -> int:
    """``v / 2**d`` rounded, on Python ints (exact at any size). Stochastic gives the floor."""
    if d <= 0:
        return v << -d
    q, r, half = v >> d, v & ((1 << d) - 1), 1 << (d - 1)
    if rounding in ("floor", "stochastic"):
        return q
    if rounding == "ceil":
        return q + (r != 0)
    if rounding == "toward_zero":
        return q + (r != 0 and v < 0)
    if rounding == "nearest_up":
        return q + (r >= half)
    if rounding == "nearest_away":
        return q + (r > half or (r == half and q >= 0))
    return q + (r > half or (r == half and q & 1 == 1))  # nearest_even


def _sticky_reduce(p: torch.Tensor, d: int) -> tuple[torch.Tensor, int]:
    """Shift right by d - 61, keeping a sticky bit, so that a shift by 61 rounds the same way.

    Rounding only needs the bits above the binary point, the half bit, and whether anything below
    is set; folding the dropped bits into bit 0 keeps all three.
    """
    k = d - 60
    if k >= 63:
        q = -(p < 0).to(torch.int64)
        sticky = p != 0
        if k == 63:
            sticky &= p != torch.iinfo(torch.int64).min
    else:
        q = p >> k
        sticky = (p & ((1 << k) - 1)) != 0
    return (q << 1) | sticky.to(torch.int64), 61


def shift_right_round(
    raw: torch.Tensor, d: int, rounding: str, pmax: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Integer ``raw / 2**d`` rounded (d >= 1), as a new tensor; ``pmax`` is ``raw.max()``.

    Uses add-then-shift where the dtype has headroom for the added constant, else the exact
    quotient-and-remainder form that never overflows.
    """
    src_bits = _INT_LIMITS[raw.dtype]
    cdtype = None
    for dt in (torch.int32, torch.int64):
        lim = _INT_LIMITS[dt]
        if lim >= src_bits and d < lim and pmax + (1 << d) <= (1 << lim) - 1:
            cdtype = dt
            break
    if cdtype is not None and rounding != "stochastic":
        p = raw.to(cdtype, copy=True)
        half = 1 << (d - 1)
        if rounding == "ceil":
            p += (1 << d) - 1
        elif rounding == "nearest_up":
            p += half
        elif rounding == "nearest_even":
            t = (p >> d) & 1
            p += t
            p += half - 1
        elif rounding == "nearest_away":
            p += half
            p -= (p < half).to(cdtype)  # p was negative before the add
        elif rounding == "toward_zero":
            p += (p >> _INT_LIMITS[cdtype]) & ((1 << d) - 1)
        p >>= d
        return p
    p = raw.to(torch.int64)
    if d > 61:
        p, d = _sticky_reduce(p, d)
    q = p >> d
    r = p & ((1 << d) - 1)
    half = 1 << (d - 1)
    if rounding == "floor":
        return q
    if rounding == "ceil":
        up = r != 0
    elif rounding == "toward_zero":
        up = (r != 0) & (p < 0)
    elif rounding == "nearest_up":
        up = r >= half
    elif rounding == "nearest_away":
        up = (r > half) | ((r == half) & (q >= 0))
    elif rounding == "nearest_even":
        up = (r > half) | ((r == half) & ((q & 1) == 1))
    else:  # stochastic: up with probability r / 2**d
        u = torch.randint(0, 1 << d, p.shape, generator=generator, dtype=torch.int64, device=p.device)
        up = u < r
    q += up
    return q


def fit_int(p: torch.Tensor, fmt: Format, overflow: str, lo: int, hi: int) -> tuple[torch.Tensor, int]:
    """Put integers into ``fmt``'s word; ``lo``/``hi`` bound ``p`` (exactly or conservatively).

    Returns the raw tensor in ``fmt.dtype`` and how many elements saturated or wrapped.
    """
    if fmt.raw_min <= lo and hi <= fmt.raw_max:
        return p.to(fmt.dtype), 0
    over = p > fmt.raw_max
    under = p < fmt.raw_min
    n = int(over.sum()) + int(under.sum())
    if n == 0:
        return p.to(fmt.dtype), 0
    if overflow == "saturate":
        return p.clamp(fmt.raw_min, fmt.raw_max).to(fmt.dtype), n
    return wrap_int64(p.to(torch.int64), fmt), n


def wrap_int64(v: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Keep the low ``word_bits`` bits of int64 values (sign-extended for signed formats)."""
    w = fmt.word_bits
    if fmt.signed:
        if w < 64:
            v = (v << (64 - w)) >> (64 - w)
    else:
        v = v & ((1 << w) - 1)
    return v.to(fmt.dtype)


BLOCK = 1 << 17


def blockwise(
    fn: Callable[..., tuple[torch.Tensor, int]], dtype: torch.dtype, *tensors: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Run an elementwise ``fn(*blocks) -> (result, count)`` over cache-sized blocks.

    Large temporaries are what make elementwise chains slow here: every fresh buffer over glibc's
    mmap threshold costs a page fault per 4 KiB. Blocks keep the temporaries small and hot; only the
    output is allocated at full size. Same-shape inputs only; results equal the one-shot call.
    """
    shape = tensors[0].shape
    n = tensors[0].numel()
    if n <= 2 * BLOCK or any(t.shape != shape for t in tensors):
        return fn(*tensors)
    flats = [t.reshape(-1) for t in tensors]
    out = torch.empty(n, dtype=dtype, device=tensors[0].device)
    total = 0
    for s in range(0, n, BLOCK):
        r, k = fn(*(f[s : s + BLOCK] for f in flats))
        out[s : s + BLOCK] = r
        total += k
    return out.view(shape), total


def requantize_raw(
    raw: torch.Tensor,
    frac_in: int,
    fmt: Format,
    rounding: str,
    overflow: str,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Raw integers with ``frac_in`` fractional bits → raw integers of ``fmt`` and the overflow count."""
    return blockwise(lambda b: _requantize_block(b, frac_in, fmt, rounding, overflow, generator), fmt.dtype, raw)


def _requantize_block(
    raw: torch.Tensor, frac_in: int, fmt: Format, rounding: str, overflow: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, int]:
    if raw.numel() == 0:
        return raw.to(fmt.dtype), 0
    lo_t, hi_t = torch.aminmax(raw)
    pmin, pmax = int(lo_t), int(hi_t)
    d = frac_in - fmt.frac_bits
    if d > 0:
        p = shift_right_round(raw, d, rounding, pmax, generator)
        lo = shift_round_int(pmin, d, rounding)
        hi = shift_round_int(pmax, d, rounding) + (rounding == "stochastic")
        return fit_int(p, fmt, overflow, lo, hi)
    s = -d
    lo, hi = pmin << s, pmax << s
    if fmt.raw_min <= lo and hi <= fmt.raw_max:
        return raw.to(fmt.dtype) << s, 0
    p = raw.to(torch.int64)
    cap_hi = fmt.raw_max >> s
    cap_lo = -((-fmt.raw_min) >> s)
    over, under = p > cap_hi, p < cap_lo
    n = int(over.sum()) + int(under.sum())
    if overflow == "wrap":
        return wrap_int64(p << s if s < 64 else torch.zeros_like(p), fmt), n
    out = (p.clamp(cap_lo, cap_hi) << s).to(fmt.dtype)
    out.masked_fill_(over, fmt.raw_max)
    out.masked_fill_(under, fmt.raw_min)
    return out, n
