"""``conv2d``: a square-kernel integer convolution, ``[out, in, k, k]`` weights on [C, H, W] input.

Padding contributes zero terms: the padded positions hold the real value 0, i.e. ``x - xz = 0``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from fxp.layers import FxConv2d
from fxp.ops.base import Field
from fxp.ops.integer_layer import IntegerLayer


class Conv2d(IntegerLayer):
    op = "conv2d"
    engine = "mac"  # one window at a time: the MAC unit's matrix is [out, k*k*in]
    exports_from = (FxConv2d,)
    fields = {**IntegerLayer.fields, "out_channels": Field(int), "kernel": Field(int), "stride": Field(int),
              "padding": Field(int)}

    windowed = True

    @property
    def window(self) -> tuple[int, int, int]:
        return self.kernel, self.stride, self.padding

    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        shape = self.in_shape
        if len(shape) != 3:
            raise self.error(f"conv2d needs [C, H, W] input, got {list(shape)}")
        k, s, p = self.kernel, self.stride, self.padding
        h, w = (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1
        if k < 1 or s < 1 or p < 0 or h < 1 or w < 1:
            raise self.error(f"kernel {k}, stride {s}, padding {p} do not fit input {list(shape)}")
        return (self.out_channels, shape[0], k, k), (self.out_channels, h, w)

    def golden_accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        p, s, k = self.padding, self.stride, self.kernel
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        cols = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # N, C, H', W', k, k
        n, c, h, wd = cols.shape[:4]
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n, h * wd, c * k * k)
        return (cols @ w.reshape(len(w), -1).T).transpose(0, 2, 1).reshape(n, len(w), h, wd)

    def torch_accumulate(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    @staticmethod
    def module_fields(m: nn.Module) -> dict:
        return {"out_channels": m.out_channels, "kernel": m.kernel_size, "stride": m.stride, "padding": m.padding}

    @staticmethod
    def float_forward(m: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, w, b, m.stride, m.padding)
