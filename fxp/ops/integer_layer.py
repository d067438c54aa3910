"""What ``dense`` and ``conv2d`` share: zero points, accumulation, requantization, the ReLU clamp.

Accumulate ``acc = sum((x - xz) * (w - wz)) + bias`` in ``acc_bits``; then one of two outputs:

- requantized (``output_format``, ``output_zero_point``, ``relu``, ``multiplier``, ``shift``): per
  output channel ``(acc * multiplier + 2**(shift-1)) >> shift`` (``acc * multiplier`` for shift 0:
  nearest, ties toward +inf); add ``output_zero_point``; saturate to the output format, from the zero
  point up when ``relu`` is true;
- bits (``threshold``, int ``[out]``, instead of those five fields): the bit ``acc >= threshold`` per
  output channel, BatchNorm and sign folded (a negative BatchNorm scale negates the channel's weights),
  so an integer layer can feed binary ones (FINN's thresholding MVAU).

A subclass supplies only its geometry and the accumulation itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fxp.errors import FxpError
from fxp.format import Format
from fxp.layers import FxReLU
from fxp.ops.base import BITS, Activation, ArrayField, Field, Op
from fxp.quantize import quantize


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, lo: int, hi: int,
               channel_axis: int) -> np.ndarray:
    """Per-channel ``(acc * mult + 2**(shift-1)) >> shift`` (ties toward +inf), zero point, saturate."""
    view = [1] * acc.ndim
    view[channel_axis] = -1
    m, s = mult.reshape(view), shift.reshape(view)
    y = acc * m
    y = (y + np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)) >> s
    return np.clip(y + out_zp, lo, hi)


def multiplier_shift(r: float) -> tuple[int, int]:
    """A real factor as ``M / 2**S`` with ``M`` in [2**30, 2**31) (31 significant bits), gemmlowp style."""
    if not (r > 0 and math.isfinite(r)):
        raise FxpError(f"requantization factor {r} is not a positive number; calibrate with more data")
    mant, exp = math.frexp(r)  # r = mant * 2**exp, mant in [0.5, 1)
    m, s = round(mant * (1 << 31)), 31 - exp
    if m == 1 << 31:
        m, s = m >> 1, s - 1
    if s > 62:  # tiny factors: keep the shift in range, give up significant bits
        m, s = max(1, m >> (s - 62)), 62
    if s < 0:
        raise FxpError(f"requantization factor {r} is too large for a 31-bit multiplier; check the calibration")
    return m, s


def _per_output(op: IntegerLayer) -> tuple[int]:
    return op.weight_shape[:1]


def _t(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a.astype(np.int64))


def _raw(t: torch.Tensor, fmt: Format, rounding: str) -> np.ndarray:
    return quantize(t.detach().double(), fmt, rounding).raw.to(torch.int64).numpy()


class IntegerLayer(Op):
    """An integer compute layer; subclasses implement :meth:`geometry`, the two accumulations,
    :meth:`module_fields` and :meth:`float_forward` (for calibration)."""

    fields = {
        "input_format": Field(Format),
        "weight_format": Field(Format),
        "output_format": Field(Format, None),  # these three and multiplier, shift: requantized outputs only
        "acc_bits": Field(int, lo=2, hi=48),
        "relu": Field(bool, None),
        "input_zero_point": Field(int),
        "output_zero_point": Field(int, None),
        "weights": ArrayField((np.int8, np.int16), lambda op: op.weight_shape,
                              lambda op: op.weight_format.raw_min, lambda op: op.weight_format.raw_max),
        "weight_zero_point": ArrayField((np.int32,), _per_output, lambda op: op.weight_format.raw_min,
                                        lambda op: op.weight_format.raw_max, optional=True),
        "bias": ArrayField((np.int32,), _per_output, lambda op: -op.acc_max - 1, lambda op: op.acc_max, optional=True),
        "multiplier": ArrayField((np.int64,), _per_output, 1, (1 << 31) - 1, optional=True),
        "shift": ArrayField((np.int64,), _per_output, 0, 62, optional=True),
        "threshold": ArrayField((np.int32, np.int64), _per_output, lambda op: -op.acc_max - 1,
                                lambda op: op.acc_max + 1, optional=True),
    }
    REQUANTIZED = ("output_format", "output_zero_point", "relu", "multiplier", "shift")  # the other output's fields

    # --- what a subclass supplies -------------------------------------------------------------------
    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(weight shape, output shape) for the incoming shape; refuses fields that do not fit it."""
        raise NotImplementedError

    def golden_accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``sum((x - xz) * (w - wz))`` in int64, output channels on axis 1 (given x - xz, w - wz)."""
        raise NotImplementedError

    def torch_accumulate(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The same sums in float64 (exact below 2**53), output channels on axis 1."""
        raise NotImplementedError

    @staticmethod
    def module_fields(m: nn.Module) -> dict:
        """The geometry fields of the entry exported from trained module ``m``."""
        raise NotImplementedError

    @staticmethod
    def float_forward(m: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """Module ``m``'s float output for ``x`` with weights ``w`` and bias ``b`` (calibration)."""
        raise NotImplementedError

    # --- validation ---------------------------------------------------------------------------------
    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    def accepts(self, incoming: Activation) -> None:
        super().accepts(incoming)
        if incoming.kind == BITS:
            raise self.error(f"{self.op} cannot take binary (bit) input; use binary_dense here")

    @property
    def thresholded(self) -> bool:
        """Whether the outputs are bits (``acc >= threshold``) rather than requantized integers."""
        return self.layer.get("threshold") is not None

    def produces(self) -> Activation:
        given = [key for key in self.REQUANTIZED if key in self.layer]
        if self.thresholded and given:
            raise self.error(f"a layer with thresholds outputs bits; drop {', '.join(given)}")
        if not self.thresholded and len(given) < len(self.REQUANTIZED):
            missing = next(key for key in self.REQUANTIZED if key not in self.layer)
            raise self.error(f"missing field {missing!r} (or give threshold for bit outputs)")
        for key in ("input_format", "output_format", "weight_format"):
            if getattr(self, key) is not None and getattr(self, key).word_bits > 16:
                raise self.error(f"{getattr(self, key)} is wider than the 16 bits integer layers take", key)
        if str(self.input_format) != self.incoming.kind:
            raise self.error(f"{self.input_format} does not match the incoming {self.incoming.kind}", "input_format")
        self.weight_shape, out_shape = self.geometry()
        return Activation(out_shape, BITS if self.thresholded else str(self.output_format))

    def check(self) -> None:
        in_fmt, w_fmt, out_fmt = self.input_format, self.weight_format, self.output_format
        xz, oz = self.input_zero_point, self.output_zero_point
        if not in_fmt.raw_min <= xz <= in_fmt.raw_max:
            raise self.error(f"{xz} is outside {in_fmt}", "input_zero_point")
        if out_fmt is not None and not out_fmt.raw_min <= oz <= out_fmt.raw_max:
            raise self.error(f"{oz} is outside {out_fmt}", "output_zero_point")
        # The accumulator must hold the worst case: terms times the largest |(x - xz)(w - wz)|, plus bias.
        bias = self.array("bias")
        terms = math.prod(self.weight_shape[1:])
        xmag = max(abs(in_fmt.raw_min - xz), abs(in_fmt.raw_max - xz))
        wmag = max(abs(w_fmt.raw_min), abs(w_fmt.raw_max)) * 2
        worst = terms * xmag * wmag + (0 if bias is None or not bias.size else int(np.abs(bias.astype(np.int64)).max()))
        if worst > self.acc_max:
            raise self.error(f"{self.acc_bits} bits can overflow (worst case {worst}); widen the accumulator",
                             "acc_bits")
        # (acc * multiplier) must fit int64: |acc| < 2**(acc_bits-1), multiplier < 2**31.
        if self.acc_bits + 31 > 63:
            raise self.error(f"{self.acc_bits} bits times a 31-bit multiplier exceeds 63 bits", "acc_bits")

    # --- execution ----------------------------------------------------------------------------------
    def golden(self, x: np.ndarray) -> np.ndarray:
        w = self.array("weights").astype(np.int64)
        wz = self.array("weight_zero_point")
        if wz is not None:
            w = w - wz.astype(np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
        acc = self.golden_accumulate(x - self.input_zero_point, w)
        view = [1] * acc.ndim
        view[1] = -1
        bias = self.array("bias")
        if bias is not None:
            acc = acc + bias.astype(np.int64).reshape(view)
        if self.thresholded:
            return (acc >= self.array("threshold").astype(np.int64).reshape(view)).astype(np.int64)
        oz, out = self.output_zero_point, self.output_format
        lo = oz if self.relu else out.raw_min
        return requantize(acc, self.array("multiplier"), self.array("shift"), oz, lo, out.raw_max, 1)

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        w = _t(self.array("weights"))
        wz = _t(self.array("weight_zero_point"))
        if wz is not None:
            w = w - wz.view(-1, *([1] * (w.dim() - 1)))
        acc = self.torch_accumulate((x - self.input_zero_point).double(), w.double())
        acc = acc.round().to(torch.int64)
        view = (1, -1) + (1,) * (acc.dim() - 2)
        b = _t(self.array("bias"))
        if b is not None:
            acc = acc + b.view(view)
        if self.thresholded:
            return (acc >= _t(self.array("threshold")).view(view)).to(torch.int64)
        m, s = _t(self.array("multiplier")).view(view), _t(self.array("shift")).view(view)
        half = torch.where(s > 0, torch.ones_like(s) << (s - 1).clamp(min=0), torch.zeros_like(s))
        y = torch.bitwise_right_shift(acc * m + half, s)
        oz, out = self.output_zero_point, self.output_format
        return (y + oz).clamp(oz if self.relu else out.raw_min, out.raw_max)

    # --- export -------------------------------------------------------------------------------------
    @classmethod
    def entry(cls, name: str, m: nn.Module, in_fmt: str, w_fmt: str, out_fmt: str, acc_bits: int, relu: bool,
              in_zp: int, out_zp: int) -> dict:
        """The description entry of trained module ``m``; its arrays go under ``<name>.<field>``."""
        return {"name": name, "op": cls.op, "input_format": in_fmt, "weight_format": w_fmt, "output_format": out_fmt,
                "acc_bits": acc_bits, "relu": relu, "input_zero_point": in_zp, "output_zero_point": out_zp,
                "weights": f"{name}.weight", "multiplier": f"{name}.multiplier", "shift": f"{name}.shift",
                **cls.module_fields(m)}

    @classmethod
    def export_fixed(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """The module's own dynamic formats: weights at the weight format, bias on the accumulator grid
        (input + weight fractional bits), a power-of-two requantization to the output format."""
        relu = bool(following) and isinstance(following[0], FxReLU)
        w_fmt, out_fmt = m.ptrack["weight"].fmt, m.out.act.fmt
        f_acc = ctx.fmt.frac_bits + w_fmt.frac_bits
        w = _raw(m.weight, w_fmt, ctx.cfg.rounding).astype(np.int8 if w_fmt.word_bits <= 8 else np.int16)
        layer = cls.entry(name, m, str(ctx.fmt), str(w_fmt), str(out_fmt), ctx.cfg.acc_bits, relu, 0, 0)
        arrays = {f"{name}.weight": w}
        if m.bias is not None:
            arrays[f"{name}.bias"] = _raw(m.bias, Format(ctx.cfg.acc_bits, f_acc), "nearest_up").astype(np.int32)
            layer["bias"] = f"{name}.bias"
        d = f_acc - out_fmt.frac_bits
        arrays[f"{name}.multiplier"] = np.full(w.shape[0], 1 << max(-d, 0), dtype=np.int64)
        arrays[f"{name}.shift"] = np.full(w.shape[0], max(d, 0), dtype=np.int64)
        ctx.add(layer, arrays)
        ctx.fmt = out_fmt
        return int(relu)

    @classmethod
    def export_binary(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """An integer layer of a binarized model (:mod:`fxp.mixed`), BatchNorm and sign after it: its
        integer weights, and per output the threshold on the accumulator that BatchNorm and sign fold to
        (the weights negated where BatchNorm's scale is negative)."""
        from fxp.binary import Sign
        from fxp.mixed import fold_accumulator_threshold

        if not (len(following) >= 2 and isinstance(following[0], (nn.BatchNorm1d, nn.BatchNorm2d))
                and isinstance(following[1], Sign)):
            raise FxpError(f"layer {name}: an integer layer of a binarized model must be followed by batchnorm and "
                           "sign, whose thresholds turn its sums into the bits the binary layers take")
        if ctx.fmt is None:
            raise FxpError(f"layer {name}: an integer layer of a binarized model reads the fixed-point input; put it "
                           "first, after a quantize layer")
        q, scale = m.integer_weights()
        w = q.to(torch.int64).numpy()
        acc_bits = 32
        acc_min, acc_max = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        bn, x_scale = following[0], 2.0**-ctx.fmt.frac_bits
        threshold = np.empty(len(w), dtype=np.int64)
        for j in range(len(w)):
            threshold[j], negate = fold_accumulator_threshold(
                x_scale * float(scale[j]), float(bn.running_mean[j]), float(bn.running_var[j]), bn.eps,
                float(bn.weight[j]), float(bn.bias[j]), acc_min, acc_max)
            if negate:
                w[j] = -w[j]  # symmetric weights: the negation stays in range
        layer = {"name": name, "op": cls.op, "input_format": str(ctx.fmt), "weight_format": f"s{m.bits}.0",
                 "acc_bits": acc_bits, "input_zero_point": 0, "weights": f"{name}.weight",
                 "threshold": f"{name}.threshold", **cls.module_fields(m)}
        ctx.add(layer, {f"{name}.weight": w.astype(np.int8 if m.bits <= 8 else np.int16),
                        f"{name}.threshold": threshold})
        ctx.fmt = None  # bits from here on
        return 2

    @classmethod
    def export_per_channel(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """Weights quantized by :mod:`fxp.compress.uniform` (``ctx.weights``: symmetric or affine, at
        ``ctx.bits``, per channel or per tensor), the output's affine scale calibrated on ``ctx.x``, int32
        bias, a 31-bit multiplier and shift per channel."""
        from fxp.compress import uniform

        relu = bool(following) and isinstance(following[0], FxReLU)
        w = m.weight.detach().double()
        b = None if m.bias is None else m.bias.detach().double()
        y = cls.float_forward(m, ctx.x, w, b)
        if relu:
            y = y.clamp(min=0)
            s_y, zp_y = max(float(y.max()), 1e-12) / 255, -128
        else:
            s_y, zp_y = max(float(y.abs().max()), 1e-12) / 127, 0
        bits, scheme = ctx.bits, uniform.scheme_args(ctx.weights)
        symmetric = scheme["symmetric"]
        # symmetric is uniform's narrow form (max|w| / 127 at 8 bits, codes -127..127), affine its 0..255 codes
        # with a zero point, stored shifted by 2**(bits-1) (-128..127 at 8 bits) so both fit s<bits>.0; the
        # shift moves codes and zero points alike, so every w - wz is the same
        q, scale, zp = uniform.codes(m.weight, bits, per_channel=ctx.per_channel, **scheme)
        channels = q.shape[0]
        s_w = np.broadcast_to(scale.astype(np.float64), (channels,)).copy()
        zp = np.broadcast_to(zp.astype(np.int64), (channels,))
        # an all-zero channel (a dead neuron) holds its zero point at any scale: scale 1 keeps its bias in range
        s_w[~m.weight.detach().flatten(1).ne(0).any(1).numpy()] = 1.0
        offset = 0 if symmetric else 1 << (bits - 1)
        layer = cls.entry(name, m, str(ctx.fmt), f"s{bits}.0", "s8.0", 32, relu, ctx.zero_point, zp_y)
        arrays = {f"{name}.weight": (q.astype(np.int64) - offset).astype(np.int8)}
        if not symmetric:
            arrays[f"{name}.weight_zero_point"] = (zp - offset).astype(np.int32)
            layer["weight_zero_point"] = f"{name}.weight_zero_point"
        s_w = torch.from_numpy(s_w)
        if b is not None:
            bias = (b / (ctx.scale * s_w)).round().clamp(-(2**31), 2**31 - 1).to(torch.int64).numpy()
            arrays[f"{name}.bias"] = bias.astype(np.int32)
            layer["bias"] = f"{name}.bias"
        ms = [multiplier_shift(ctx.scale * float(sw) / s_y) for sw in s_w]
        arrays[f"{name}.multiplier"] = np.array([mult for mult, _ in ms], dtype=np.int64)
        arrays[f"{name}.shift"] = np.array([shift for _, shift in ms], dtype=np.int64)
        ctx.add(layer, arrays)
        ctx.x, ctx.scale, ctx.zero_point, ctx.fmt = y, s_y, zp_y, Format(8, 0)
        return int(relu)
