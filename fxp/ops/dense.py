"""``dense``: a fully connected integer layer, ``[out, in]`` weights on flat input (built by the MAC unit)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxp.layers import FxLinear
from fxp.mixed import QuantLinear
from fxp.ops.base import Field
from fxp.ops.integer_layer import IntegerLayer


class Dense(IntegerLayer):
    op = "dense"
    engine = "mac"
    exports_from = (FxLinear, QuantLinear)
    fields = {**IntegerLayer.fields, "out_features": Field(int)}

    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if len(self.in_shape) != 1:
            raise self.error(f"dense needs flat input, got {list(self.in_shape)}; add a flatten layer")
        return (self.out_features, self.in_shape[0]), (self.out_features,)

    def golden_accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x @ w.T

    def torch_accumulate(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)

    @staticmethod
    def module_fields(m: nn.Module) -> dict:
        return {"out_features": m.out_features}

    @staticmethod
    def float_forward(m: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)
