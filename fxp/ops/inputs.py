"""The input quantizers (``input.quantizer``): float inputs to the first layer's integers or bits."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fxp.binary import Binarize
from fxp.format import Format
from fxp.layers import FxQuant
from fxp.mixed import QuantizeInput
from fxp.ops.base import BITS, Activation, Field, InputQuantizer


class FixedInput(InputQuantizer):
    """``{"kind": "fixed", "format": "s8.7"}``: ``clamp(floor(x * 2**frac + 1/2))``, nearest with ties
    toward +inf, saturating (a power-of-two scaling: exact in float64)."""

    kind = "fixed"
    fields = {"format": Field(Format)}
    exports_from = (FxQuant, QuantizeInput)

    def produces(self) -> Activation:
        return Activation(self.shape, str(self.format))

    def golden(self, x: np.ndarray) -> np.ndarray:
        fmt = self.format
        return np.clip(np.floor(np.ldexp(x, fmt.frac_bits) + 0.5), fmt.raw_min, fmt.raw_max).astype(np.int64)

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.format
        return torch.floor(x * 2.0**fmt.frac_bits + 0.5).clamp(fmt.raw_min, fmt.raw_max).to(torch.int64)

    @classmethod
    def export_fixed(cls, ctx, m: nn.Module) -> dict:
        ctx.fmt = m.act.fmt
        return {"kind": cls.kind, "format": str(ctx.fmt)}

    @classmethod
    def export_binary(cls, ctx, m: nn.Module) -> dict:
        """The fixed format of a binarized model's :class:`~fxp.mixed.QuantizeInput`."""
        ctx.fmt = m.format
        return {"kind": cls.kind, "format": str(ctx.fmt)}

    @classmethod
    def export_per_channel(cls, ctx, m: nn.Module) -> dict:
        """A power-of-two format chosen from the calibration data."""
        from fxp.dynamic import max_abs_frac_bits

        ctx.fmt = Format(8, max_abs_frac_bits(float(ctx.x.abs().max()), 8))
        ctx.scale, ctx.zero_point = 2.0**-ctx.fmt.frac_bits, 0
        return {"kind": cls.kind, "format": str(ctx.fmt)}


class BinarizeInput(InputQuantizer):
    """``{"kind": "binarize", "threshold": 0.5}``: bit 1 (meaning +1) where ``x >= threshold``, else 0."""

    kind = "binarize"
    fields = {"threshold": Field((int, float))}
    exports_from = (Binarize,)

    def produces(self) -> Activation:
        return Activation(self.shape, BITS)

    def golden(self, x: np.ndarray) -> np.ndarray:
        return (x >= self.threshold).astype(np.int64)

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= self.threshold).to(torch.int64)

    @classmethod
    def export_binary(cls, ctx, m: nn.Module) -> dict:
        return {"kind": cls.kind, "threshold": float(m.threshold)}
