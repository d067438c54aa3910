"""``FxTensor``: raw integers plus a format, with exact arithmetic.

Arithmetic never rounds: each result's format grows so that every result fits (APyTypes' rules).
With ``ia, fa`` the operands' integer and fractional bits:

===========  =================================================================
``a + b``    frac ``max(fa, fb)``, int ``max(ia, ib) + 1``
``a - b``    the same, always signed
``a * b``    frac ``fa + fb``, int ``ia + ib`` (word ``wa + wb``)
``a @ b``    the product's format plus ``ceil(log2(K))`` int bits for K terms
``a.sum()``  plus ``ceil(log2(n))`` int bits for n terms
``-a``       one more int bit, signed
===========  =================================================================

An unsigned operand mixed with a signed one counts as signed with one more bit. A result wider than
64 bits is refused: requantize an operand first. Narrowing is explicit, with ``requantize``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fxp.errors import FxpError
from fxp.format import Format, as_format
from fxp.rounding import blockwise, check_modes, requantize_raw


def _signed_view(fmt: Format) -> Format:
    return fmt if fmt.signed else Format(fmt.word_bits + 1, fmt.frac_bits, True)


def _result_format(op: str, int_bits: int, frac_bits: int, signed: bool) -> Format:
    word = int_bits + frac_bits
    limit = 64 if signed else 63
    if word > limit:
        raise FxpError(
            f"{op} needs a {word}-bit result ({'s' if signed else 'u'}{word}.{frac_bits}), more than the "
            f"{limit} bits fxp holds exactly; requantize an operand to fewer bits first"
        )
    return Format(max(word, 1), frac_bits, signed)


def mul_pow2(t: torch.Tensor, e: int) -> torch.Tensor:
    """``t * 2**e`` for a float tensor, in two steps so that 2**e itself never over/underflows."""
    if -100 <= e <= 100:  # 2**e is a normal float32 too: one pass
        return t * math.ldexp(1.0, e)
    a = e // 2
    return t * math.ldexp(1.0, a) * math.ldexp(1.0, e - a)


def _clog2(n: int) -> int:
    """ceil(log2(n)) in integers (a float log2 rounds wrongly just above large powers of two)."""
    return max(n - 1, 0).bit_length()


class FxTensor:
    """A tensor of fixed-point values: ``raw * 2**-fmt.frac_bits``.

    Parameters
    ----------
    raw:
        Integer tensor of stored values; converted to ``fmt.dtype``. Values outside the format are
        refused.
    fmt:
        The :class:`~fxp.Format` (or its text form).

    Members
    -------
    raw:
        torch integer tensor (int8/16/32/64, the narrowest that holds the format).
    fmt:
        The format.
    overflows:
        How many elements saturated or wrapped in the quantize/requantize that made this tensor.
    """

    __slots__ = ("raw", "fmt", "overflows")

    def __init__(self, raw: torch.Tensor | np.ndarray, fmt: Format | str) -> None:
        fmt = as_format(fmt)
        t = torch.as_tensor(raw)
        if torch.is_floating_point(t) or t.is_complex() or t.dtype == torch.bool:
            raise FxpError(f"raw must hold integers, got dtype {t.dtype}; use fxp.quantize for real numbers")
        if t.numel():
            lo, hi = (int(v) for v in torch.aminmax(t.to(torch.int64)))
            if lo < fmt.raw_min or hi > fmt.raw_max:
                raise FxpError(
                    f"raw values {lo}..{hi} do not fit {fmt} (raw range {fmt.raw_min}..{fmt.raw_max}); "
                    "use a wider format or requantize"
                )
        self.raw, self.fmt, self.overflows = t.to(fmt.dtype), fmt, 0

    @classmethod
    def _make(cls, raw: torch.Tensor, fmt: Format, overflows: int = 0) -> FxTensor:
        # For results the library computed itself: already in range and in fmt.dtype.
        obj = cls.__new__(cls)
        obj.raw, obj.fmt, obj.overflows = raw, fmt, overflows
        return obj

    # --- views -----------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.raw.shape

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, idx: object) -> FxTensor:
        return FxTensor._make(self.raw[idx], self.fmt)

    def __repr__(self) -> str:
        return f"FxTensor({self.to_float().tolist() if self.raw.numel() <= 8 else tuple(self.shape)}, fmt={self.fmt})"

    def to_float(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Values as floats (exact in float64 up to 53-bit words, in float32 up to 24)."""
        return mul_pow2(self.raw.to(dtype), -self.fmt.frac_bits)

    def to_bits(self) -> np.ndarray:
        """Two's-complement bit patterns as unsigned integers (uint8/16/32/64), as hardware sees them."""
        w = self.fmt.word_bits
        udt = next(dt for bits, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)) if w <= bits)
        bits = self.raw.to(torch.int64).numpy().astype(np.uint64)  # int64 → uint64 keeps the pattern
        if w < 64:
            bits &= np.uint64((1 << w) - 1)
        return bits.astype(udt)

    # --- narrowing ---------------------------------------------------------------------------
    def requantize(
        self,
        fmt: Format | str,
        rounding: str = "nearest_even",
        overflow: str = "saturate",
        *,
        generator: torch.Generator | None = None,
    ) -> FxTensor:
        """This tensor in another format, rounded and overflowed as asked; ``overflows`` counts."""
        fmt = as_format(fmt)
        check_modes(rounding, overflow)
        raw, n = requantize_raw(self.raw, self.fmt.frac_bits, fmt, rounding, overflow, generator)
        return FxTensor._make(raw, fmt, n)

    # --- exact arithmetic ----------------------------------------------------------------------
    def _other(self, other: object, op: str) -> FxTensor:
        if not isinstance(other, FxTensor):
            raise FxpError(f"{op} takes two FxTensors, got {type(other).__name__}; quantize it first")
        if self.raw.dim() and other.raw.dim():
            try:
                torch.broadcast_shapes(self.shape, other.shape)
            except RuntimeError:
                if op != "@":
                    raise FxpError(f"{op}: shapes {tuple(self.shape)} and {tuple(other.shape)} do not broadcast") from None
        return other

    def _aligned(self, other: FxTensor, op: str, subtract: bool) -> FxTensor:
        other = self._other(other, op)
        a, b = self.fmt, other.fmt
        signed = a.signed or b.signed or subtract
        if signed:
            a, b = _signed_view(a), _signed_view(b)
        frac = max(a.frac_bits, b.frac_bits)
        fmt = _result_format(op, max(a.int_bits, b.int_bits) + 1, frac, signed)
        sa, sb = frac - a.frac_bits, frac - b.frac_bits

        def op_block(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
            x, y = x.to(fmt.dtype) << sa, y.to(fmt.dtype) << sb
            return (x - y if subtract else x + y), 0

        return FxTensor._make(blockwise(op_block, fmt.dtype, self.raw, other.raw)[0], fmt)

    def __add__(self, other: FxTensor) -> FxTensor:
        return self._aligned(other, "+", False)

    def __sub__(self, other: FxTensor) -> FxTensor:
        return self._aligned(other, "-", True)

    def __neg__(self) -> FxTensor:
        a = _signed_view(self.fmt)
        fmt = _result_format("-", a.int_bits + 1, a.frac_bits, True)
        return FxTensor._make(-self.raw.to(fmt.dtype), fmt)

    def _product_format(self, other: FxTensor, op: str, extra_int: int = 0) -> Format:
        a, b = self.fmt, other.fmt
        signed = a.signed or b.signed
        return _result_format(op, a.int_bits + b.int_bits + extra_int, a.frac_bits + b.frac_bits, signed)

    def __mul__(self, other: FxTensor) -> FxTensor:
        other = self._other(other, "*")
        fmt = self._product_format(other, "*")
        dt = fmt.dtype
        raw, _ = blockwise(lambda x, y: (x.to(dt) * y.to(dt), 0), dt, self.raw, other.raw)
        return FxTensor._make(raw, fmt)

    def __matmul__(self, other: FxTensor) -> FxTensor:
        other = self._other(other, "@")
        if self.raw.dim() == 0 or other.raw.dim() == 0:
            raise FxpError("@ needs tensors of at least one dimension; use * for scalars")
        k = self.shape[-1]
        kb = other.shape[0] if other.raw.dim() == 1 else other.shape[-2]
        if k != kb:
            raise FxpError(f"@: shapes {tuple(self.shape)} and {tuple(other.shape)} do not agree on the inner dimension ({k} vs {kb})")
        fmt = self._product_format(other, "@", _clog2(k))
        a, b = self.raw, other.raw
        if a.dtype == torch.int8 and b.dtype == torch.int8 and a.dim() == 2 and b.dim() == 2 and k <= 1 << 16:
            # int8 x int8 products are at most 2**14, so 2**16 of them fit an int32 accumulator.
            out = torch._int_mm(a.contiguous(), b.contiguous())
        elif fmt.word_bits <= 24:  # every partial sum is an integer float32 holds exactly
            out = a.to(torch.float32) @ b.to(torch.float32)
        elif fmt.word_bits <= 53:
            out = a.to(torch.float64) @ b.to(torch.float64)
        else:
            out = a.to(torch.int64) @ b.to(torch.int64)
        return FxTensor._make(out.to(fmt.dtype), fmt)

    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> FxTensor:
        """Exact sum; the result gains ``ceil(log2(n))`` integer bits for n terms."""
        n = self.raw.numel() if dim is None else math.prod(
            self.shape[d] for d in ((dim,) if isinstance(dim, int) else dim)
        )
        a = self.fmt
        fmt = _result_format("sum", a.int_bits + _clog2(n), a.frac_bits, a.signed)
        if dim is None:
            out = self.raw.sum(dtype=torch.int64)
        else:
            out = self.raw.sum(dim=dim, keepdim=keepdim, dtype=torch.int64)
        return FxTensor._make(out.to(fmt.dtype), fmt)
