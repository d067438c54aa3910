"""The PyTorch integer path: an integer model description run with torch, independently of the golden model.

Where the golden model (``sim.golden``) uses numpy int64 and bit-packed XNOR/popcount, this path uses
torch: convolutions and matrix products in float64 on integer values (exact below 2**53), binary
layers as ±1 products, ``F.max_pool2d``. Each op's version is its class's ``torch`` method
(:mod:`fxp.ops`), beside its ``golden`` one: two implementations that must agree on every integer.
"""

from __future__ import annotations

import numpy as np
import torch

from fxp.fxpm import Model


def run(model: Model, x: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
    """Every layer's integer outputs (int64 tensors), the quantized input first."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(len(x), *model.input.shape)
    a = model.input.torch(x)
    outs = [a]
    for op in model.ops:
        a = op.torch(a)
        outs.append(a)
    return outs
