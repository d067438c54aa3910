"""``maxpool2d`` (kernel, stride): the maximum of each window, on integers or bits alike."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxp.layers import FxMaxPool2d
from fxp.ops.base import Activation, Field, Op, windows


class MaxPool2d(Op):
    op = "maxpool2d"
    window_reduce = "max"
    exports_from = (FxMaxPool2d, nn.MaxPool2d)  # the second in binarized models
    fields = {"kernel": Field(int), "stride": Field(int)}
    windowed = True

    def produces(self) -> Activation:
        return Activation((self.in_shape[0], *self.window_grid()), self.incoming.kind)

    def golden(self, x: np.ndarray) -> np.ndarray:
        return windows(x, self.kernel, self.stride).max(axis=(4, 5))

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
