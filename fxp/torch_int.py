"""The PyTorch integer path: an integer model description run with torch, independently of the golden model.

Where the golden model (``sim.golden``) uses numpy int64 and bit-packed XNOR/popcount, this path uses
torch: convolutions and matrix products in float64 on integer values (exact below 2**53), binary
layers as ±1 products, ``F.max_pool2d``. Two implementations that must agree on every integer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fxp.format import Format
from fxp.fxpm import Model


def _t(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a.astype(np.int64))


def run(model: Model, x: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
    """Every layer's integer outputs (int64 tensors), the quantized input first."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(len(x), *model.spec["input"]["shape"])
    q = model.spec["input"]["quantizer"]
    if q["kind"] == "binarize":
        a = (x >= q["threshold"]).to(torch.int64)
    else:
        fmt = Format.parse(q["format"])
        a = torch.floor(x * 2.0**fmt.frac_bits + 0.5).clamp(fmt.raw_min, fmt.raw_max).to(torch.int64)
    outs = [a]
    for layer in model.layers:
        op = layer["op"]
        if op in ("dense", "conv2d"):
            w = _t(model.array(layer, "weights"))
            wz = _t(model.array(layer, "weight_zero_point"))
            if wz is not None:
                w = w - wz.view(-1, *([1] * (w.dim() - 1)))
            xf = (a - layer["input_zero_point"]).double()
            if op == "dense":
                acc = F.linear(xf, w.double())
            else:
                acc = F.conv2d(xf, w.double(), stride=layer["stride"], padding=layer["padding"])
            acc = acc.round().to(torch.int64)
            view = (1, -1) + (1,) * (acc.dim() - 2)
            b = _t(model.array(layer, "bias"))
            if b is not None:
                acc = acc + b.view(view)
            m, s = _t(model.array(layer, "multiplier")).view(view), _t(model.array(layer, "shift")).view(view)
            half = torch.where(s > 0, torch.ones_like(s) << (s - 1).clamp(min=0), torch.zeros_like(s))
            y = torch.bitwise_right_shift(acc * m + half, s)
            out = Format.parse(layer["output_format"])
            oz = layer["output_zero_point"]
            a = (y + oz).clamp(oz if layer["relu"] else out.raw_min, out.raw_max)
        elif op == "binary_dense":
            k = a.shape[1]
            wbits = np.unpackbits(model.array(layer, "weights"), axis=1, count=k, bitorder="little")
            w_pm = torch.from_numpy(wbits.astype(np.float64) * 2 - 1)
            dot = (a.double() * 2 - 1) @ w_pm.T  # the ±1 dot product = 2 * popcount(XNOR) - k
            pc = ((dot + k) / 2).round().to(torch.int64)
            thr = _t(model.array(layer, "threshold"))
            a = pc if thr is None else (pc >= thr).to(torch.int64)
        elif op == "maxpool2d":
            a = F.max_pool2d(a.double(), layer["kernel"], layer["stride"]).to(torch.int64)
        else:
            a = a.reshape(len(a), -1)
        outs.append(a)
    return outs
