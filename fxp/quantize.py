"""Real numbers → fixed point: ``quantize``.

Floats are scaled by ``2**frac_bits`` (exact in binary floating point unless the result leaves the
float range, which is handled), rounded in place and narrowed to the raw dtype. One read-only pass
(``aminmax``) finds NaN and tells whether anything can overflow, so the common in-range case costs
about what a bare ``round().clamp().to(int16)`` does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fxp.errors import FxpError
from fxp.format import Format, as_format
from fxp.rounding import blockwise, check_modes, requantize_raw, wrap_int64
from fxp.tensor import FxTensor, mul_pow2


def as_tensor(x: object) -> torch.Tensor:
    """torch tensors pass through; numpy arrays are wrapped without a copy; lists are converted."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == np.float64 or x.dtype == np.float32 or np.issubdtype(x.dtype, np.signedinteger):
            return torch.from_numpy(np.ascontiguousarray(x))
        if x.dtype.kind in "uif" or x.dtype == np.bool_:
            return torch.from_numpy(x.astype(np.float64 if x.dtype.kind == "f" else np.int64))
        raise FxpError(f"cannot quantize a numpy array of dtype {x.dtype}; pass numbers (float or int)")
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise FxpError(f"cannot quantize {type(x).__name__}: pass a torch tensor, numpy array or numbers ({e})") from None


def _scaled(t: torch.Tensor, f: int, rounding: str) -> torch.Tensor:
    """``t * 2**f`` as a new float tensor whose rounding gives the exact answer."""
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.dtype == torch.float32 and -100 <= f <= 100 and rounding != "stochastic":
        return t * math.ldexp(1.0, f)
    # float64 holds every float32 exactly; past ±1200 the answer no longer depends on f
    # (everything nonzero saturates, or everything rounds like a tiny number of its sign).
    return mul_pow2(t.to(torch.float64), max(-1200, min(1200, f)))


def _round_float_(y: torch.Tensor, rounding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Round float values to integers (returned tensor may be ``y`` itself, changed in place)."""
    if rounding == "nearest_even":
        return y.round_()
    if rounding == "floor":
        return y.floor_()
    if rounding == "ceil":
        return y.ceil_()
    if rounding == "toward_zero":
        return y.trunc_()
    if rounding == "nearest_away":
        # y - trunc(y) is exact in floating point; adding 0.5 first would not be.
        t = torch.trunc(y)
        y -= t
        return t.add_(y >= 0.5).sub_((y <= -0.5).to(t.dtype))
    t = torch.floor(y)
    y -= t  # the fraction, exact, in [0, 1)
    if rounding == "nearest_up":
        return t.add_(y >= 0.5)
    u = torch.rand(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return t.add_(u < y)  # stochastic


def _nan_error(t: torch.Tensor) -> FxpError:
    nan = torch.isnan(t)
    idx = tuple(int(i) for i in torch.nonzero(nan)[0]) if t.dim() else ()
    return FxpError(
        f"input has {int(nan.sum())} NaN value(s) (first at index {idx}); "
        "fixed point has no NaN: replace or mask them before quantizing"
    )


def _fit_float(y: torch.Tensor, t: torch.Tensor, fmt: Format, overflow: str) -> tuple[torch.Tensor, int]:
    hi_excl = math.ldexp(1.0, fmt.word_bits - 1 if fmt.signed else fmt.word_bits)
    lo = float(fmt.raw_min)
    over = y >= hi_excl
    under = y < lo
    n = int(over.sum()) + int(under.sum())
    if overflow == "saturate":
        top = _np_dtype(y)(fmt.raw_max)  # as the clamp will see it, in y's precision
        if int(top) > fmt.raw_max:  # raw_max not representable: clamp below it, then patch
            top = np.nextafter(top, _np_dtype(y)(-np.inf))
        top = float(top)
        raw = y.clamp_(lo, top).to(fmt.dtype)
        if int(top) != fmt.raw_max:
            raw.masked_fill_(over, fmt.raw_max)
        return raw, n
    if bool(torch.isinf(t).any()):
        raise FxpError("overflow='wrap' cannot wrap an infinite input; use overflow='saturate' or replace the infinities")
    # A finite value scaled past the float range is a multiple of 2**64: it wraps to 0.
    y = torch.where(torch.isinf(y), 0.0, y).to(torch.float64)
    # Split the integer-valued float into 32-bit halves (each step exact), join them in int64
    # arithmetic, which wraps modulo 2**64 as hardware does.
    hi = torch.floor(y * 2.0**-32)
    low = (y - hi * 2.0**32).to(torch.int64)
    v = (torch.fmod(hi, 2.0**32).to(torch.int64) << 32) + low
    return wrap_int64(v, fmt), n


def _np_dtype(y: torch.Tensor) -> type:
    return np.float32 if y.dtype == torch.float32 else np.float64


def quantize(
    x: object,
    fmt: Format | str,
    rounding: str = "nearest_even",
    overflow: str = "saturate",
    *,
    generator: torch.Generator | None = None,
) -> FxTensor:
    """Quantize numbers to a fixed-point format.

    Parameters
    ----------
    x:
        torch tensor, numpy array, or (nested lists of) numbers. Floats are read exactly; integers
        are exact too (they are taken as ``frac_bits = 0`` values and requantized).
    fmt:
        A :class:`~fxp.Format` or its text form (``"s16.8"``).
    rounding:
        One of :data:`fxp.rounding.ROUNDING`. ``stochastic`` draws from ``generator`` (or torch's
        global generator), so a seeded generator reproduces the result.
    overflow:
        ``saturate`` or ``wrap``. ±inf saturates; under ``wrap`` it is an error. NaN is always an error.

    Returns
    -------
    FxTensor whose ``overflows`` counts the elements that saturated or wrapped.
    """
    fmt = as_format(fmt)
    check_modes(rounding, overflow)
    t = as_tensor(x)
    if not torch.is_floating_point(t):
        if t.is_complex():
            raise FxpError("cannot quantize complex numbers; quantize the real and imaginary parts separately")
        raw, n = requantize_raw(t.to(torch.int64) if t.dtype == torch.bool else t, 0, fmt, rounding, overflow, generator)
        return FxTensor._make(raw, fmt, n)
    try:
        raw, n = blockwise(lambda b: _quantize_block(b, fmt, rounding, overflow, generator), fmt.dtype, t)
    except _NaNFound:
        raise _nan_error(t) from None
    return FxTensor._make(raw, fmt, n)


class _NaNFound(Exception):
    """Raised inside a block; the caller reports the index in the whole tensor."""


def _quantize_block(
    t: torch.Tensor, fmt: Format, rounding: str, overflow: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, int]:
    f = fmt.frac_bits
    y = _scaled(t, f, rounding)
    if y.numel() == 0:
        return torch.zeros(y.shape, dtype=fmt.dtype), 0
    lo_t, hi_t = torch.aminmax(y)
    lo, hi = float(lo_t), float(hi_t)
    if math.isnan(lo) or math.isnan(hi):
        raise _NaNFound
    y = _round_float_(y, rounding, generator)
    if f < 0 and rounding in ("floor", "ceil"):
        # A tiny input scaled down can underflow to ±0, where floor/ceil would lose the -1/+1.
        lost = (y == 0) & (t != 0)
        if bool(lost.any()):
            step = -1.0 if rounding == "floor" else 1.0
            y = torch.where(lost & ((t < 0) if step < 0 else (t > 0)), step, y)
    # Rounding is monotonic, so floor(lo)..ceil(hi) bounds every result; exact bounds are only
    # needed when this conservative range leaves the word.
    if math.isfinite(lo) and math.isfinite(hi):
        bound_lo, bound_hi = math.floor(lo) - (f < 0), math.ceil(hi) + (f < 0)
        if fmt.raw_min <= bound_lo and bound_hi <= fmt.raw_max:
            return y.to(fmt.dtype), 0
    return _fit_float(y, t, fmt, overflow)


def requantize(
    x: FxTensor,
    fmt: Format | str,
    rounding: str = "nearest_even",
    overflow: str = "saturate",
    *,
    generator: torch.Generator | None = None,
) -> FxTensor:
    """Move a fixed-point tensor to another format (the functional form of ``FxTensor.requantize``)."""
    return x.requantize(fmt, rounding, overflow, generator=generator)


__all__ = ["quantize", "requantize", "as_tensor"]


def quantize_to_grid(
    x: torch.Tensor,
    fmt: Format,
    rounding: str = "nearest_even",
    overflow: str = "saturate",
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """``quantize(x, fmt).to_float(x.dtype)`` and the overflow count, without the integer detour.

    Training keeps fixed-point values in float tensors; this is the hot path for that. It stays in
    float32 when every grid value is a normal float32 (words up to 24 bits, binary point within
    ±100), which makes it exact; otherwise it takes the integer route.
    """
    if not (
        x.dtype == torch.float32 and fmt.word_bits <= 24 and -100 <= fmt.frac_bits <= 100
        and overflow == "saturate" and rounding != "stochastic"
        and not (fmt.frac_bits < 0 and rounding in ("floor", "ceil"))  # tiny inputs underflow to ±0
    ):
        q = quantize(x, fmt, rounding, overflow, generator=generator)
        return q.to_float(x.dtype if torch.is_floating_point(x) else torch.float32), q.overflows
    y = x * math.ldexp(1.0, fmt.frac_bits)
    if y.numel() == 0:
        return y, 0
    lo_t, hi_t = torch.aminmax(y)
    lo, hi = float(lo_t), float(hi_t)
    if math.isnan(lo) or math.isnan(hi):
        raise _nan_error(x)
    y = _round_float_(y, rounding, generator)
    n = 0
    if not (fmt.raw_min <= lo - 1 and hi + 1 <= fmt.raw_max):  # conservative, and safe for ±inf
        n = int(torch.count_nonzero(y > fmt.raw_max)) + int(torch.count_nonzero(y < fmt.raw_min))
        y.clamp_(fmt.raw_min, fmt.raw_max)
    return y.mul_(math.ldexp(1.0, -fmt.frac_bits)), n
