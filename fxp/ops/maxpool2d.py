"""``maxpool2d`` (kernel, stride): the maximum of each window, on integers or bits alike."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from fxp.layers import FxMaxPool2d
from fxp.ops.base import Activation, Field, Op


class MaxPool2d(Op):
    op = "maxpool2d"
    window_reduce = "max"
    exports_from = (FxMaxPool2d, nn.MaxPool2d)  # the second in binarized models
    fields = {"kernel": Field(int), "stride": Field(int)}

    windowed = True

    @property
    def window(self) -> tuple[int, int, int]:
        return self.kernel, self.stride, 0

    def produces(self) -> Activation:
        shape, k, s = self.in_shape, self.kernel, self.stride
        if len(shape) != 3:
            raise self.error(f"maxpool2d needs [C, H, W] input, got {list(shape)}")
        if k < 1 or s < 1 or k > shape[1] or k > shape[2]:
            raise self.error(f"kernel {k}, stride {s} do not fit input {list(shape)}")
        return Activation((shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1), self.incoming.kind)

    def golden(self, x: np.ndarray) -> np.ndarray:
        k, s = self.kernel, self.stride
        return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x.double(), self.kernel, self.stride).to(torch.int64)

    @classmethod
    def export_fixed(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        ctx.add({"name": name, "op": cls.op, "kernel": m.kernel, "stride": m.stride})
        return 0

    @classmethod
    def export_per_channel(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        ctx.x = F.max_pool2d(ctx.x, m.kernel, m.stride)
        return cls.export_fixed(ctx, name, m, following)

    @classmethod
    def export_binary(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """Max-pooling of ±1 values is the OR of their bits: the same op on bits."""
        kernel = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        stride = m.stride if isinstance(m.stride, int) else m.stride[0]
        ctx.add({"name": name, "op": cls.op, "kernel": kernel, "stride": stride})
        return 0
