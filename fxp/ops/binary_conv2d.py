"""``binary_conv2d``: an XNOR-popcount convolution of a [C, H, W] bit map (no padding: a padded bit
would be neither +1 nor -1), thresholded to bits (see :mod:`fxp.ops.binary_layer`). Weights
``[out, ceil(C k k / 8)]``, each row the kernel in (c, u, v) order; cross-correlation (no flip)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxp.binary import BinaryConv2d as TrainedBinaryConv2d
from fxp.ops.base import Field, im2col
from fxp.ops.binary_layer import BinaryLayer


class BinaryConv2d(BinaryLayer):
    op = "binary_conv2d"
    windowed = True
    exports_from = (TrainedBinaryConv2d,)
    fields = {"out_channels": Field(int), "kernel": Field(int), "stride": Field(int), **BinaryLayer.fields}

    @property
    def weight_rows(self) -> int:
        return self.out_channels

    @property
    def fan_in(self) -> int:
        return self.in_shape[0] * self.kernel * self.kernel

    def out_shape_of(self) -> tuple[int, ...]:
        return (self.out_channels, *self.window_grid())

    def patches(self, bits: np.ndarray) -> np.ndarray:
        cols = im2col(bits, self.kernel, self.stride)
        n, h, w, fan_in = cols.shape
        return cols.reshape(n, h * w, fan_in)

    def arrange(self, out: np.ndarray) -> np.ndarray:
        n, _, o = out.shape
        _, h, w = self.out_shape
        return out.reshape(n, h, w, o).transpose(0, 3, 1, 2)

    def torch_dot(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        c, k = self.in_shape[0], self.kernel
        return F.conv2d(x, w.view(len(w), c, k, k), stride=self.stride)

    @classmethod
    def export_binary(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """Kernel bits (sign(0) = +1) in (c, u, v) order; BatchNorm2d + Sign after it fold into thresholds."""
        bits = (m.weight.detach() >= 0).numpy().astype(np.uint8).reshape(m.out_channels, -1)
        layer = {"out_channels": m.out_channels, "kernel": m.kernel, "stride": m.stride}
        return cls.export_binary_layer(ctx, name, bits, bits.shape[1], layer, nn.BatchNorm2d, following)
