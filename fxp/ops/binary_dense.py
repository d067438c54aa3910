"""``binary_dense``: XNOR-popcount of a flat bit vector, thresholded to bits or ending the network as
popcounts (see :mod:`fxp.ops.binary_layer`); weights ``[out, ceil(in/8)]``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fxp.binary import BinaryLinear
from fxp.ops.base import Field
from fxp.ops.binary_layer import BinaryLayer


class BinaryDense(BinaryLayer):
    op = "binary_dense"
    exports_from = (BinaryLinear,)
    fields = {"out_features": Field(int), **BinaryLayer.fields}

    @property
    def weight_rows(self) -> int:
        return self.out_features

    @property
    def fan_in(self) -> int:
        return self.in_shape[0]

    def out_shape_of(self) -> tuple[int, ...]:
        if len(self.in_shape) != 1:
            raise self.error(f"binary_dense needs flat input, got {list(self.in_shape)}; add a flatten layer")
        return (self.out_features,)

    def patches(self, bits: np.ndarray) -> np.ndarray:
        return bits[:, None, :]

    def arrange(self, out: np.ndarray) -> np.ndarray:
        return out[:, 0, :]

    def torch_dot(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w.T

    @classmethod
    def export_binary(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """Weight bits (sign(0) = +1); BatchNorm1d + Sign after it fold into thresholds."""
        bits = (m.weight.detach() >= 0).numpy().astype(np.uint8)
        return cls.export_binary_layer(ctx, name, bits, m.in_features, {"out_features": m.out_features},
                                       nn.BatchNorm1d, following)
