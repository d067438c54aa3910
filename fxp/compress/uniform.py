"""Uniform b-bit weight quantization with a scale and zero point, bit for bit as PyTorch computes it.

The baseline that Deep Compression's weight sharing (a learned codebook) is measured against, and the
usual int8 deployment format: a weight ``w`` is stored as the integer ``q`` with
``w ≈ scale * (q - zero_point)``, one (scale, zero point) per tensor or per output channel.

The parameters follow ``torch.ao.quantization``'s ``MinMaxObserver`` (per tensor) and
``PerChannelMinMaxObserver`` (per channel), ``UniformQuantizationObserverBase._calculate_qparams``,
in float32 as they compute it:

- **symmetric** (``per_tensor_symmetric`` / ``per_channel_symmetric``, dtype ``qint8``): integers
  ``qmin..qmax = -2**(b-1)..2**(b-1) - 1`` (-128..127 at 8 bits), zero point 0 and
  ``scale = max(|min(w, 0)|, max(w, 0)) / ((qmax - qmin) / 2)``, i.e. max|w| / 127.5 at 8 bits, so the
  largest weight maps to ±127.5 and is clamped to 127 on the positive side. With ``narrow=True`` the
  range is ``-(2**(b-1) - 1)..2**(b-1) - 1`` (-127..127) and the scale max|w| / 127: the observer
  built with ``quant_min=-127, quant_max=127``, the textbook symmetric form.
- **affine** (``per_tensor_affine`` / ``per_channel_affine``, dtype ``quint8``): integers
  ``0..2**b - 1``, ``scale = (max(w, 0) - min(w, 0)) / (qmax - qmin)`` and
  ``zero_point = clamp(qmin - round(min(w, 0) / scale), qmin, qmax)``: the range always holds 0, so
  a zero weight (a pruned one) is stored exactly.

Both floor the scale at the observer's ``eps``, float32's machine epsilon (2**-23), which also settles
an all-zero tensor or channel (scale eps, zero point 0). Below 8 bits the range is the observer's
``quant_min``/``quant_max`` for that width (-8..7 or 0..15 at 4 bits), and codes are clamped to it, as
``torch.fake_quantize_per_tensor_affine`` clamps (``quantize_per_tensor`` clamps to the 8-bit dtype
only, so there the largest weight of a symmetric 4-bit tensor, at 7.5, would round to 8).

Quantizing follows ``torch.quantize_per_tensor`` / ``quantize_per_channel`` on an x86 CPU (fbgemm):
``q = clamp(round(w * inv + zero_point), qmin, qmax)`` with ``inv = 1 / scale`` rounded to float32
(a product, not a division: the two differ in the last bit now and then, which moves some ties) and
``round`` half to even. Where the float32 rounding happens differs between the two, and both are
matched: per tensor fbgemm's AVX2 kernel computes ``w * inv + zero_point`` in one fused multiply-add
(one rounding), per channel a scalar loop rounds the product and then the sum. With zero point 0
(symmetric) both are ``round(w * inv)``; affine, the zero point added before rounding can turn a value
just below a half into an exact half (w * inv = 100.49999 with zero point 123 gives 223.5, then 224,
where ``zero_point + round(w * inv)`` gives 223). Dequantizing is ``scale * (q - zero_point)`` in
float32, as torch's ``dequantize``. Weights are read as float32 first, as the observers read them.

Quantization-aware training (``fxp compress --uniform``) uses these same functions: :func:`fake_quantize`
is ``dequantize(quantize(w))`` at ``scale_zero_point(w)``, :func:`snap` repeats it to a fixed point, and
:class:`UniformQAT` keeps a model's layers on that grid while it trains (straight-through). Its symmetric
grid is the narrow one (``scheme_args``), the affine one 0..2**b - 1 with a zero point.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FxpError

EPS = np.float32(np.finfo(np.float32).eps)  # the observers' default eps
SCALE_BYTES = 4  # a float32 scale per channel
ZERO_POINT_BYTES = 4  # an int32 zero point per channel


def _check_bits(bits) -> int:
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise FxpError(f"bits must be in 1..8, got {bits!r}; uniform quantization stores each weight in 1 to 8 "
                       "bits (8 for int8)")
    return int(bits)


def quant_range(bits: int = 8, *, symmetric: bool, narrow: bool = False) -> tuple[int, int]:
    """The integers ``(qmin, qmax)`` of ``bits``-bit codes: signed when symmetric, unsigned when affine."""
    bits = _check_bits(bits)
    if narrow and not symmetric:
        raise FxpError("narrow applies to symmetric quantization only; drop narrow=True or pass symmetric=True")
    if narrow and bits < 2:
        raise FxpError("a narrow symmetric range needs 2 or more bits (1 bit leaves only 0); use narrow=False")
    if symmetric:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _float32(w, what: str) -> np.ndarray:
    """``w`` (a numpy array or a torch tensor) as a float32 numpy array of finite numbers."""
    if hasattr(w, "detach"):  # a torch tensor, maybe one that requires grad
        w = w.detach().cpu().numpy()
    a = np.asarray(w)
    if a.dtype.kind not in "biuf":
        raise FxpError(f"{what} takes numbers, got dtype {a.dtype}; pass the weights as a float array")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise FxpError(f"{what}: the weights hold NaN or infinity; quantize finite weights")
    return a


def _axis(axis, ndim: int, what: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise FxpError(f"{what}: axis {axis!r} is not an axis of a {ndim}-dimensional array; "
                       f"give the channel axis, from {-ndim} to {ndim - 1} (0 for output channels)")
    return int(axis) % ndim


def _per_channel(p: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    if axis is None:
        return p.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return p.reshape(shape)


def _params(scale, zero_point, shape: tuple, axis, what: str, qrange: tuple[int, int] | None = None):
    """Checked float32 scales and int64 zero points, shaped to broadcast against ``shape``."""
    s = np.asarray(scale)
    z = np.asarray(zero_point)
    if s.dtype.kind not in "iuf" or z.dtype.kind not in "iu":
        raise FxpError(f"{what}: scale must be a number and zero_point an integer, got dtypes {s.dtype} and "
                       f"{z.dtype}; pass what scale_zero_point returns")
    s = s.astype(np.float32)
    z = z.astype(np.int64)
    if axis is None:
        if s.size != 1 or z.size != 1:
            raise FxpError(f"{what}: {s.size} scales and {z.size} zero points for one tensor; "
                           "pass axis= for per-channel parameters")
    else:
        axis = _axis(axis, len(shape), what)
        if s.shape != (shape[axis],) or z.shape != (shape[axis],):
            raise FxpError(f"{what}: scales {s.shape} and zero points {z.shape} do not match the {shape[axis]} "
                           f"channels of axis {axis}; pass one of each per channel")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise FxpError(f"{what}: scales must be positive and finite, got {s.ravel()[:4].tolist()}...; "
                       "pass what scale_zero_point returns")
    if qrange is not None and np.any((z < qrange[0]) | (z > qrange[1])):
        raise FxpError(f"{what}: zero points {z.ravel()[:4].tolist()}... are outside the codes "
                       f"{qrange[0]}..{qrange[1]}; pass what scale_zero_point returns for these bits")
    return _per_channel(s, axis, len(shape)), _per_channel(z, axis, len(shape)), axis


def scale_zero_point(w, bits: int = 8, *, symmetric: bool, per_channel: bool, axis: int = 0,
                     narrow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The observer's (scale, zero_point) for ``w``: float32 and int32, shape () or (channels,).

    ``per_channel`` takes one pair per index of ``axis`` (0: a layer's output channels), like
    ``PerChannelMinMaxObserver(ch_axis=axis)``; otherwise one pair, like ``MinMaxObserver``.
    """
    what = "scale_zero_point"
    a = _float32(w, what)
    qmin, qmax = quant_range(bits, symmetric=symmetric, narrow=narrow)
    if a.size == 0:
        raise FxpError(f"{what}: the weights are empty; quantize a tensor with at least one weight")
    if per_channel:
        if a.ndim == 0:
            raise FxpError(f"{what}: a 0-dimensional tensor has no channels; pass per_channel=False")
        axis = _axis(axis, a.ndim, what)
        a = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
        lo, hi = a.min(axis=1), a.max(axis=1)
    else:
        lo, hi = a.min(keepdims=True).reshape(()), a.max(keepdims=True).reshape(())
    zero = np.float32(0)
    lo, hi = np.minimum(lo, zero), np.maximum(hi, zero)  # the range always holds 0
    if symmetric:
        scale = np.maximum(np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2), EPS)
        zp = np.zeros(scale.shape, np.int32)
    else:
        scale = np.maximum((hi - lo) / np.float32(qmax - qmin), EPS)
        zp = np.clip(qmin - np.rint(lo / scale).astype(np.int64), qmin, qmax).astype(np.int32)
    return scale.astype(np.float32), zp


def quantize(w, scale, zero_point, bits: int = 8, axis: int | None = None, *, symmetric: bool,
             narrow: bool = False) -> np.ndarray:
    """The integer codes of ``w``: int8 when symmetric, uint8 when affine (module docstring's formula).

    ``axis`` None: one scale and zero point for the tensor; otherwise one per index of ``axis``.
    """
    what = "quantize"
    a = _float32(w, what)
    qmin, qmax = quant_range(bits, symmetric=symmetric, narrow=narrow)
    s, z, axis = _params(scale, zero_point, a.shape, axis, what, (qmin, qmax))
    inv = np.float32(1) / s
    if axis is None:
        t = _fused_multiply_add(a, inv, z)
    else:
        with np.errstate(over="ignore"):  # an overflow to inf is clamped below like any large value
            t = a * inv + z.astype(np.float32)
    # values beyond the codes are clamped anyway; clipping first keeps the int64 cast defined
    t = np.clip(t, np.float32(-2.0**40), np.float32(2.0**40))
    q = np.clip(np.rint(t).astype(np.int64), qmin, qmax)
    return q.astype(np.int8 if symmetric else np.uint8)


def _fused_multiply_add(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``x * y + z`` for float32 ``x``, ``y`` and integer ``z``, rounded once to float32, as an FMA instruction.

    The product of two float32 is exact in float64; the sum is rounded to float64 first, with its error
    kept (Knuth's TwoSum). Rounding that float64 to float32 is the correct rounding of the exact sum
    except where it lands exactly halfway between two float32 while the exact sum does not: there the
    error says which way to go.
    """
    p = x.astype(np.float64) * y.astype(np.float64)
    zf = z.astype(np.float64)
    s = p + zf
    back = s - p
    err = (p - (s - back)) + (zf - back)  # s + err == p + z exactly
    big = np.abs(s) > 2.0**40  # clamped later anyway; keeps the float32 cast finite
    s = np.where(big, np.sign(s) * 2.0**40, s)
    f = s.astype(np.float32)
    below = f.astype(np.float64) <= s
    lo = np.where(below, f, np.nextafter(f, np.float32(-np.inf)))
    hi = np.where(below, np.nextafter(f, np.float32(np.inf)), f)
    tie = (s == (lo.astype(np.float64) + hi.astype(np.float64)) / 2) & (err != 0) & ~big
    return np.where(tie, np.where(err > 0, hi, lo), f)


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """``scale * (q - zero_point)`` in float32, per tensor (``axis`` None) or per index of ``axis``."""
    what = "dequantize"
    if hasattr(q, "detach"):
        q = q.detach().cpu().numpy()
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise FxpError(f"dequantize takes integer codes, got dtype {q.dtype}; pass what quantize returns")
    s, z, _ = _params(scale, zero_point, q.shape, axis, what)
    return (q.astype(np.int64) - z).astype(np.float32) * s


def uniform_bytes(n_weights: int, bits: int, channels: int = 1) -> int:
    """Exact bytes of ``n_weights`` uniform ``bits``-bit weights with ``channels`` (scale, zero point) pairs.

    ``ceil(n_weights * bits / 8)`` for the codes packed bit to bit, plus per channel a float32 scale and
    an int32 zero point (8 bytes; charged for symmetric codes too, whose zero point is always 0).
    ``channels`` is 1 for per-tensor parameters.
    """
    bits = _check_bits(bits)
    for name, n, low in (("n_weights", n_weights, 0), ("channels", channels, 1)):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < low:
            raise FxpError(f"uniform_bytes: {name} must be an integer of at least {low}, got {n!r}; "
                           "count the weights and the (scale, zero point) pairs")
    return -(-int(n_weights) * bits // 8) + int(channels) * (SCALE_BYTES + ZERO_POINT_BYTES)


# --- uniform quantization-aware training ---------------------------------------------------------------

SCHEMES = ("affine", "symmetric")
MAX_SNAP_ROUNDS = 10_000  # fake_quantize rounds a channel may take to reach its fixed point (seen: under 60)


def scheme_args(scheme: str) -> dict:
    """``symmetric``/``narrow`` for a scheme name: ``affine``, or ``symmetric`` in its narrow form.

    Symmetric weights here are the textbook form (max|w| / (2**(b-1) - 1), codes -(2**(b-1) - 1)..2**(b-1) - 1,
    the per-channel export's from the start): torch's default (max|w| / 127.5) maps the largest weight to
    127.5, clamped to 127, so quantizing its own dequantized weights gives another scale every time.
    """
    if scheme not in SCHEMES:
        raise FxpError(f"uniform scheme {scheme!r} is not known; use {' or '.join(SCHEMES)}")
    return {"symmetric": scheme == "symmetric", "narrow": scheme == "symmetric"}


def fake_quantize(w, bits: int = 8, *, symmetric: bool, per_channel: bool, axis: int = 0,
                  narrow: bool = False) -> np.ndarray:
    """``dequantize(quantize(w))`` at ``scale_zero_point(w)``: the float32 values a uniform model computes with.

    On the same scale and zero point, torch's ``fake_quantize_per_channel_affine`` (and per tensor) give the
    same values except on ties that the zero point makes: torch rounds ``w / scale`` and then adds the zero
    point, ``quantize_per_channel`` (which :func:`quantize` follows) adds it before rounding.
    """
    q, scale, zp = codes(w, bits, symmetric=symmetric, per_channel=per_channel, axis=axis, narrow=narrow)
    return dequantize(q, scale, zp, axis if per_channel else None)


def snap(w, bits: int = 8, *, symmetric: bool, per_channel: bool, axis: int = 0, narrow: bool = False) -> np.ndarray:
    """``w`` on its own uniform grid: :func:`fake_quantize` repeated until it returns its input.

    One round puts the weights on the grid of their [min, max]; the grid of those values can differ in the
    scale's last bit (affine: ``(max - min) / (2**b - 1)`` of the dequantized values, rounded in float32), so
    one round is not always a fixed point. The codes do not move; the scale settles within a few rounds
    (under 60 seen; symmetric takes one). At the fixed point quantizing the weights again gives the same
    codes, scales and values: the model trained and saved is the integer model, bit for bit.
    """
    kw = {"symmetric": symmetric, "narrow": narrow}
    a = _float32(w, "snap")
    if not per_channel:
        for _ in range(MAX_SNAP_ROUNDS):
            b = fake_quantize(a, bits, per_channel=False, **kw)
            if np.array_equal(b, a):
                return b
            a = b
        raise FxpError("uniform weights found no fixed point of their quantizer; report this as a bug")
    axis = _axis(axis, a.ndim, "snap")
    rows = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1).copy()  # never the caller's array
    todo = np.arange(len(rows))
    for _ in range(MAX_SNAP_ROUNDS):
        b = fake_quantize(rows[todo], bits, per_channel=True, **kw)
        moved = ~np.all(b == rows[todo], axis=1)
        rows[todo] = b
        todo = todo[moved]
        if not len(todo):
            shape = list(np.moveaxis(a, axis, 0).shape)
            return np.moveaxis(rows.reshape(shape), 0, axis)
    raise FxpError("uniform weights found no fixed point of their quantizer; report this as a bug")


def codes(w, bits: int = 8, *, symmetric: bool, per_channel: bool, axis: int = 0, narrow: bool = False):
    """``(q, scale, zero_point)`` of ``w``: :func:`scale_zero_point` then :func:`quantize` (what the export stores)."""
    scale, zp = scale_zero_point(w, bits, symmetric=symmetric, per_channel=per_channel, axis=axis, narrow=narrow)
    q = quantize(w, scale, zp, bits, axis if per_channel else None, symmetric=symmetric, narrow=narrow)
    return q, scale, zp


class UniformQAT:
    """Trains a model with its linear and conv2d weights on a ``bits``-bit uniform grid (straight-through).

    The layers' ``weight`` parameters always hold :func:`snap` of float master weights kept here, so the
    forward pass (training and evaluation alike) computes with exactly the weights the run saves and
    ``fxp export`` quantizes. After every optimizer step the step taken on a weight is added to its master
    and the weight is snapped again: the gradient at the quantized weights updates the float ones (the
    straight-through estimator; the range covers every weight, so there is nothing to clip). Weight decay
    and the regularizers see the quantized weights. ``pruner`` (:class:`fxp.compress.prune.Pruner`) keeps
    its masks: a pruned weight's master stays 0, and 0 is on every grid (the range always holds 0).
    Members: ``history`` (the pruner's), ``layers``.
    """

    def __init__(self, model, pruner, bits: int, scheme: str = "affine", per_channel: bool = True) -> None:
        import torch

        self.torch = torch
        self.pruner, self.history, self.layers = pruner, pruner.history, pruner.layers
        self.bits, self.per_channel, self.kw = _check_bits(bits), bool(per_channel), scheme_args(scheme)
        quant_range(self.bits, **self.kw)  # refuses a symmetric 1-bit grid
        with torch.no_grad():
            self.master = {n: m.weight.detach().float().clone() for n, m in self.layers.items()}
        self._snap()

    def snapped(self, w):
        """``w`` (a tensor) on its grid, as a float32 tensor on its device."""
        t = self.torch.from_numpy(snap(w.detach().cpu(), self.bits, per_channel=self.per_channel, **self.kw))
        return t.to(w.device)

    def _snap(self) -> None:
        with self.torch.no_grad():
            self.seen = {}
            for n, m in self.layers.items():
                self.seen[n] = self.snapped(self.master[n])
                m.weight.copy_(self.seen[n].to(m.weight.dtype))

    def start_epoch(self, epoch: int) -> None:
        self.pruner.start_epoch(epoch)

    def after_step(self) -> None:
        self.pruner.after_step()
        with self.torch.no_grad():
            for n, m in self.layers.items():
                # a pruned weight's master stays 0: the pruner zeroed its gradient and the weight, and seen is 0
                self.master[n] += m.weight.detach().float() - self.seen[n]
        self._snap()

    def remove(self) -> None:
        self.pruner.remove()
