"""``binary_dense``: XNOR-popcount on bits, thresholded to bits or ending the network as popcounts.

Weights bit-packed ``[out, ceil(in/8)]`` uint8, LSB first, 1 meaning +1. ``popcount(XNOR(x, w))``
counts the agreeing bits (``0..in``); with ``threshold`` (int32 ``[out]``) the output is the bit
``popcount >= threshold`` (BatchNorm and sign folded, see :func:`fxp.binary.fold_threshold`),
without it the popcounts themselves: the last layer's scores. Built by the XNOR unit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fxp.binary import BinaryLinear, Scale, Sign, fold_threshold
from fxp.bits import pack_bits, xnor_popcount
from fxp.errors import FxpError
from fxp.ops.base import BITS, POPCOUNT, Activation, ArrayField, Field, Op


class BinaryDense(Op):
    op = "binary_dense"
    engine = "xnor"
    exports_from = (BinaryLinear,)
    fields = {
        "out_features": Field(int),
        "weights": ArrayField((np.uint8,), lambda op: (op.out_features, (op.in_shape[0] + 7) // 8)),
        "threshold": ArrayField((np.int32,), lambda op: (op.out_features,), 0, lambda op: op.in_shape[0] + 1,
                                optional=True),
    }

    def accepts(self, incoming: Activation) -> None:
        super().accepts(incoming)
        if incoming.kind != BITS:
            raise self.error("binary_dense needs bit input (a binarized input or a thresholded binary_dense)")

    def produces(self) -> Activation:
        if len(self.in_shape) != 1:
            raise self.error(f"binary_dense needs flat input, got {list(self.in_shape)}; add a flatten layer")
        return Activation((self.out_features,), POPCOUNT if self.layer.get("threshold") is None else BITS)

    def golden(self, bits: np.ndarray) -> np.ndarray:
        k = bits.shape[1]
        w = self.array("weights")  # (M, ceil(k/8)) uint8, LSB first
        w_words = pack_bits(np.unpackbits(w, axis=1, count=k, bitorder="little"))
        pc = xnor_popcount(pack_bits(bits), w_words, k)
        thr = self.array("threshold")
        return pc if thr is None else (pc >= thr.astype(np.int64)).astype(np.int64)

    def torch(self, bits: torch.Tensor) -> torch.Tensor:
        k = bits.shape[1]
        wbits = np.unpackbits(self.array("weights"), axis=1, count=k, bitorder="little")
        w_pm = torch.from_numpy(wbits.astype(np.float64) * 2 - 1)
        dot = (bits.double() * 2 - 1) @ w_pm.T  # the ±1 dot product = 2 * popcount(XNOR) - k
        pc = ((dot + k) / 2).round().to(torch.int64)
        thr = self.array("threshold")
        return pc if thr is None else (pc >= torch.from_numpy(thr.astype(np.int64))).to(torch.int64)

    @classmethod
    def export_binary(cls, ctx, name: str, m: nn.Module, following: list[nn.Module]) -> int:
        """Weight bits (sign(0) = +1); BatchNorm1d + Sign after it fold into thresholds (a negative scale
        inverts the row's weights); without them it must be the last layer, a Scale after it dropped."""
        bits = (m.weight.detach() >= 0).numpy().astype(np.uint8)
        layer = {"name": name, "op": cls.op, "out_features": m.out_features, "weights": f"{name}.weight"}
        arrays = {}
        if len(following) >= 2 and isinstance(following[0], nn.BatchNorm1d) and isinstance(following[1], Sign):
            bn = following[0]
            thr = np.empty(m.out_features, dtype=np.int32)
            for j in range(m.out_features):
                t, flip = fold_threshold(m.in_features, float(bn.running_mean[j]), float(bn.running_var[j]), bn.eps,
                                         float(bn.weight[j]), float(bn.bias[j]))
                thr[j] = t
                if flip:
                    bits[j] ^= 1
            arrays[f"{name}.threshold"] = thr
            layer["threshold"] = f"{name}.threshold"
            folded = 2
        else:
            folded = 0
            while folded < len(following) and isinstance(following[folded], Scale):
                folded += 1
            if folded != len(following):
                raise FxpError(f"layer {name}: a binary layer without BatchNorm and sign must be the last one")
        arrays[f"{name}.weight"] = np.packbits(bits, axis=1, bitorder="little")
        ctx.add(layer, arrays)
        return folded
