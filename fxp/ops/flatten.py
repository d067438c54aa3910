"""``flatten``: [C, H, W] to [C*H*W] in (C, H, W) order; values unchanged."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fxp.layers import FxFlatten
from fxp.ops.base import Activation, Op


class Flatten(Op):
    op = "flatten"
    reorders_only = True
    exports_from = (FxFlatten, nn.Flatten)

    def produces(self) -> Activation:
        return Activation((math.prod(self.in_shape),), self.incoming.kind)

    def golden(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)

    @classmethod
    def export_fixed(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        ctx.add({"name": name, "op": cls.op})
        return 0

    export_binary = export_fixed

    @classmethod
    def export_per_channel(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        ctx.x = ctx.x.flatten(1)
        return cls.export_fixed(ctx, name, m, following)
