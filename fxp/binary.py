"""Binarized networks: BNN (FINN style), BWN and XNOR-Net layers, and the BatchNorm + sign folding the BNN export uses.

Conventions (as Larq and FINN):

* ``sign(0) = +1``; the straight-through estimator passes the gradient where ``|x| <= 1``.
* In hardware, bit 1 means +1 and bit 0 means -1, so a ±1 dot product over K terms is
  ``2 * popcount(XNOR(x, w)) - K``.
* BatchNorm followed by sign folds into one integer threshold per output: ``popcount >= T``. A
  negative BatchNorm scale flips the comparison; the export folds it into the row's weights
  (inverting them turns ``popcount`` into ``K - popcount``), so hardware only ever compares ``>=``.

BWN (Rastegari et al. 2016): ``W ≈ α B`` with ``B = sign(W)``, ``α = mean|W|`` per output channel.
XNOR-Net: inputs binarized too, ``I ≈ β sign(I)``, with β spatially varying: ``K = A * k`` where
``A`` is the mean of ``|I|`` over channels and ``k`` the box filter of the kernel's size; the
output is ``(sign(I) ⊛ sign(W)) ⊙ K α``, and the binary convolution is an XNOR-popcount
(:func:`xnor_conv2d_popcount`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with sign(0) = +1; straight-through gradient clipped to |x| <= 1."""
    return _SignSTE.apply(x)


class Binarize(nn.Module):
    """Input binarization: +1 where ``x >= threshold``, else -1 (no gradient needed at the input)."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= self.threshold, 1.0, -1.0).to(x.dtype)


class Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign(x)


class BinaryLinear(nn.Module):
    """Linear layer with ±1 weights (latent float weights, clipped to [-1, 1] after each step).

    ``latent = True`` computes with the latent weights themselves instead of their signs: training with
    the W²(1 - W²) regularizer (``Recipe.binary``) instead of the straight-through estimator, the weights
    rounded to ±1 when it is switched off again.
    """

    latent = False

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight if self.latent else sign(self.weight))

    @torch.no_grad()
    def post_step(self) -> None:
        self.weight.clamp_(-1, 1)


class BinaryConv2d(nn.Module):
    """Convolution with ±1 weights on ±1 inputs, no padding (latent float weights, clipped after each step;
    ``latent`` as :class:`BinaryLinear`'s)."""

    latent = False

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel, self.stride = in_channels, out_channels, kernel, stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel).uniform_(-1, 1) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight if self.latent else sign(self.weight), stride=self.stride)

    @torch.no_grad()
    def post_step(self) -> None:
        self.weight.clamp_(-1, 1)


class Scale(nn.Module):
    """A learnable positive scalar for the last layer's scores: keeps softmax trainable, not argmax."""

    def __init__(self, init: float = 0.1) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(init))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.log_scale.exp()


def bwn_weight(w: torch.Tensor) -> torch.Tensor:
    """BWN: α sign(W), α = mean |W| per output channel; gradient straight through to W."""
    alpha = w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return alpha * sign(w)


class BWNLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, bwn_weight(self.weight), self.bias)


class BWNConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, bwn_weight(self.weight), self.bias, self.stride, self.padding)


class XNORConv2d(nn.Conv2d):
    """XNOR-Net convolution: binary inputs and weights, scaled by K (input) and α (weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        a = x.detach().abs().mean(dim=1, keepdim=True)  # A: mean |I| over channels
        kmap = F.avg_pool2d(a, k, stride=self.stride, padding=self.padding, count_include_pad=True)  # A * box filter
        alpha = self.weight.detach().abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        y = F.conv2d(sign(x), sign(self.weight), None, self.stride, self.padding)
        y = y * kmap * alpha
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def xnor_conv2d_popcount(x: torch.Tensor, w: torch.Tensor, stride: int = 1) -> np.ndarray:
    """``sign(x) ⊛ sign(w)`` (no padding) computed as 2 * popcount(XNOR) - K on bit-packed words.

    The same product XNORConv2d computes with ±1 floats; used to show the two agree exactly.
    """
    from fxp.bits import pack_bits, xnor_popcount
    from fxp.ops.base import im2col

    xb = (x.detach().numpy() >= 0).astype(np.uint8)
    wb = (w.detach().numpy() >= 0).astype(np.uint8)
    o, _, k, _ = wb.shape
    cols = im2col(xb, k, stride)
    n, h, wd, kk = cols.shape
    pc = xnor_popcount(pack_bits(cols.reshape(n * h * wd, kk)), pack_bits(wb.reshape(o, kk)), kk)
    return (2 * pc - kk).reshape(n, h, wd, o).transpose(0, 3, 1, 2)


# --- folding BatchNorm + sign into thresholds ------------------------------------------------------
def bn_sign_cut(mean: float, var: float, eps: float, gamma: float, beta: float) -> tuple[Fraction | None, bool]:
    """Where ``sign(BN(y))`` turns +1, exactly: ``(tau, above)``, +1 exactly when ``y >= tau`` (``above``,
    a positive scale) or ``y <= tau`` (a negative one). With ``gamma == 0`` BatchNorm gives ``beta``
    everywhere: ``(None, beta >= 0)``, +1 always or never. Exact rational arithmetic on the float
    parameters, ``sigma = sqrt(var + eps)`` as float64 computes it."""
    sigma = Fraction(float(np.sqrt(np.float64(var) + np.float64(eps))))
    g, b, mu = Fraction(float(gamma)), Fraction(float(beta)), Fraction(float(mean))
    if g == 0:
        return None, b >= 0
    return mu - b * sigma / g, g > 0


def fold_threshold(k: int, mean: float, var: float, eps: float, gamma: float, beta: float) -> tuple[int, bool]:
    """(T, flip) such that ``sign(BN(2*pc - k)) = +1`` exactly when ``pc' >= T``, with
    ``pc' = k - pc`` if ``flip`` (negative scale) else ``pc`` (:func:`bn_sign_cut`)."""
    tau, above = bn_sign_cut(mean, var, eps, gamma, beta)
    if tau is None:
        return (0 if above else k + 1), False
    half = (tau + k) / 2  # in popcount units: y = 2 pc - k
    if above:
        return max(0, min(k + 1, math.ceil(half))), False
    t = k - math.floor(half)  # pc <= floor(half)  <=>  k - pc >= k - floor(half)
    return max(0, min(k + 1, t)), True


def bn_sign_reference(y: int, mean: float, var: float, eps: float, gamma: float, beta: float) -> int:
    """sign(BN(y)) in exact arithmetic (1 for +1, 0 for -1), the same sigma as fold_threshold."""
    sigma = Fraction(float(np.sqrt(np.float64(var) + np.float64(eps))))
    z = (Fraction(y) - Fraction(float(mean))) / sigma * Fraction(float(gamma)) + Fraction(float(beta))
    return int(z >= 0)
