"""Integer layers inside binarized networks: a fixed-point input and an int8 layer that feeds binary ones.

A binarized network that binarizes its input pixels loses most of what a grey image says (the SFC BNN
on Fashion-MNIST: 83 %). FINN's remedy is an integer first layer: the pixels quantized to a fixed-point
format, an int8 matrix-vector product, then BatchNorm and sign as in the binary layers after it. Its
export (``dense`` with thresholds, :mod:`fxp.ops.integer_layer`) folds BatchNorm and sign into one
integer threshold per output on the accumulator, so the hardware compares instead of requantizing.

- :class:`QuantizeInput`: ``x`` rounded to a fixed format (no gradient is needed at the input);
- :class:`QuantLinear`: weights fake-quantized to ``bits`` per output channel, symmetric
  (``scale = max|w| / (2**(bits-1) - 1)``), with a straight-through gradient; no bias (BatchNorm follows).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from fxp.binary import bn_sign_cut
from fxp.format import Format


class QuantizeInput(nn.Module):
    """``clamp(floor(x * 2**frac + 1/2)) / 2**frac`` in ``format`` (the description's fixed input quantizer)."""

    def __init__(self, format: str = "u8.8") -> None:
        super().__init__()
        self.format = Format.parse(format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.format
        raw = torch.floor(x * 2.0**fmt.frac_bits + 0.5).clamp(fmt.raw_min, fmt.raw_max)
        return raw * 2.0**-fmt.frac_bits


class QuantLinear(nn.Module):
    """A linear layer whose weights are ``bits``-bit integers times a per-output scale (see the module)."""

    def __init__(self, in_features: int, out_features: int, bits: int = 8) -> None:
        super().__init__()
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's initialisation

    def integer_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer weights ``[out, in]``, per-output scale ``[out]``): ``weight ≈ integers * scale``."""
        top = 2 ** (self.bits - 1) - 1
        w = self.weight.detach()
        scale = w.abs().amax(1).clamp(min=1e-12) / top
        return (w / scale[:, None]).round().clamp(-top, top), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, scale = self.integer_weights()
        w = self.weight + (q * scale[:, None] - self.weight).detach()  # straight through
        return F.linear(x, w)


def fold_accumulator_threshold(scale: float, mean: float, var: float, eps: float, gamma: float,
                               beta: float, acc_min: int, acc_max: int) -> tuple[int, bool]:
    """(T, negate) such that ``sign(BN(acc * scale)) = +1`` exactly when ``acc' >= T``, with
    ``acc' = -acc`` where ``negate`` (a negative BatchNorm scale) else ``acc``; ``T`` kept within
    ``acc_min .. acc_max + 1`` (always / never); the cut is :func:`fxp.binary.bn_sign_cut`'s."""
    tau, above = bn_sign_cut(mean, var, eps, gamma, beta)
    if tau is None:
        return (acc_min if above else acc_max + 1), False
    cut = tau / Fraction(float(scale))  # y = acc * scale >= tau <=> acc >= cut (a positive scale)
    if above:
        return max(acc_min, min(acc_max + 1, math.ceil(cut))), False
    t = -math.floor(cut)  # acc <= floor(cut) <=> -acc >= -floor(cut)
    return max(acc_min, min(acc_max + 1, t)), True
