"""``conv2d``: a square-kernel integer convolution, ``[out, in, k, k]`` weights on [C, H, W] input.

Padding contributes zero terms: the padded positions hold the real value 0, i.e. ``x - xz = 0``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxp.layers import FxConv2d
from fxp.ops.base import Field, im2col
from fxp.ops.integer_layer import IntegerLayer


class Conv2d(IntegerLayer):
    op = "conv2d"
    engine = "mac"  # one window at a time: the MAC unit's matrix is [out, k*k*in]
    exports_from = (FxConv2d,)
    fields = {**IntegerLayer.fields, "out_channels": Field(int), "kernel": Field(int), "stride": Field(int),
              "padding": Field(int)}
    windowed = True

    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        h, w = self.window_grid()
        return (self.out_channels, self.in_shape[0], self.kernel, self.kernel), (self.out_channels, h, w)

    def golden_accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        cols = im2col(x, self.kernel, self.stride, self.padding)  # N, H', W', C k k
        return (cols @ w.reshape(len(w), -1).T).transpose(0, 3, 1, 2)

    def torch_accumulate(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    @staticmethod
    def module_fields(m: nn.Module) -> dict:
        return {"out_channels": m.out_channels, "kernel": m.kernel_size, "stride": m.stride, "padding": m.padding}

    @staticmethod
    def float_forward(m: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, w, b, m.stride, m.padding)
