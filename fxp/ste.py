"""Quantization inside autograd: the straight-through estimator (Bengio et al. 2013).

The forward pass rounds to the format; the backward pass treats rounding as the identity, since its
true derivative is zero almost everywhere. With ``clip_grad`` the gradient is also zeroed where the
input saturated, as the derivative of a clamp would be.
"""

from __future__ import annotations

import torch

from fxp.format import Format, as_format
from fxp.quantize import quantize_to_grid


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fmt, rounding, overflow, generator, clip_grad):  # noqa: D102
        q, _ = quantize_to_grid(x.detach(), fmt, rounding, overflow, generator=generator)
        ctx.clip = clip_grad
        if clip_grad:
            ctx.save_for_backward((x >= fmt.min) & (x <= fmt.max))
        return q

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        if ctx.clip:
            (inside,) = ctx.saved_tensors
            grad = grad * inside
        return grad, None, None, None, None, None


def fake_quantize(
    x: torch.Tensor,
    fmt: Format | str,
    rounding: str = "nearest_even",
    overflow: str = "saturate",
    *,
    generator: torch.Generator | None = None,
    clip_grad: bool = False,
) -> torch.Tensor:
    """``x`` rounded to ``fmt`` and returned as floats of ``x``'s dtype, differentiable straight through.

    Parameters
    ----------
    x:
        A float tensor, usually one that requires grad.
    fmt, rounding, overflow, generator:
        As for :func:`fxp.quantize`.
    clip_grad:
        Zero the gradient where ``x`` lies outside the format's range.
    """
    return _FakeQuantize.apply(x, as_format(fmt), rounding, overflow, generator, clip_grad)
