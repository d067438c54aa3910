"""What the XNOR-popcount ops share: bits in, ``popcount(XNOR(x, w))`` per output, thresholds to bits.

A layer's weights are bit-packed rows, one per output, ``[out, ceil(fan_in/8)]`` uint8, LSB first,
1 meaning +1; ``fan_in`` is the inputs an output sees (a dense layer's inputs, a convolution's
``C x k x k`` window in (c, u, v) order). ``popcount(XNOR(x, w))`` counts the agreeing bits
(``0..fan_in``); with ``threshold`` (int32 ``[out]``) the output is the bit ``popcount >= threshold``
(BatchNorm and sign folded, see :func:`fxp.binary.fold_threshold`), without it the popcount itself
(the last layer's scores). Built by the XNOR unit.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
from torch import nn

from fxp.binary import Scale, Sign, fold_threshold
from fxp.bits import pack_bits, xnor_popcount
from fxp.errors import FxpError
from fxp.ops.base import BITS, POPCOUNT, Activation, ArrayField, Op


class BinaryLayer(Op):
    """The shared part; a subclass gives ``weight_rows``, ``fan_in``, ``out_shape_of`` (its output shape,
    checking its fields against the input), and ``patches(x)`` (per output position the ``fan_in`` bits
    an output sees, as an array ``[N, positions, fan_in]``) and ``arrange(scores)`` (back to its shape)."""

    engine = "xnor"
    fields = {
        "weights": ArrayField((np.uint8,), lambda op: (op.weight_rows, (op.fan_in + 7) // 8)),
        "threshold": ArrayField((np.int32,), lambda op: (op.weight_rows,), 0, lambda op: op.fan_in + 1, optional=True),
    }

    def accepts(self, incoming: Activation) -> None:
        super().accepts(incoming)
        if incoming.kind != BITS:
            raise self.error(f"{self.op} needs bit input (a binarized input or a thresholded binary layer)")

    def produces(self) -> Activation:
        return Activation(self.out_shape_of(), POPCOUNT if self.layer.get("threshold") is None else BITS)

    # the weights in the forms golden and torch take, prepared once per op rather than per batch
    @cached_property
    def _weight_bits(self) -> np.ndarray:
        bits = np.unpackbits(self.array("weights"), axis=1, count=self.fan_in, bitorder="little")
        bits.flags.writeable = False  # shared by every caller
        return bits

    @cached_property
    def _weight_words(self) -> np.ndarray:
        return pack_bits(self._weight_bits)  # repacked: the padding bits past fan_in are 0, as xnor_popcount needs

    @cached_property
    def _weight_pm(self) -> torch.Tensor:
        return torch.from_numpy(self._weight_bits.astype(np.float64) * 2 - 1)

    def weight_bits(self) -> np.ndarray:
        """The weights as a 0/1 matrix ``[outputs, fan_in]`` (read-only)."""
        return self._weight_bits

    def golden(self, bits: np.ndarray) -> np.ndarray:
        # uint8 before the patches are cut: a convolution's patches copy each bit k*k times
        patches = self.patches(bits.astype(np.uint8))
        n, positions = patches.shape[:2]
        pc = xnor_popcount(pack_bits(patches.reshape(n * positions, -1)), self._weight_words, self.fan_in)
        thr = self.array("threshold")
        out = pc if thr is None else (pc >= thr.astype(np.int64)).astype(np.int64)
        return self.arrange(out.reshape(n, positions, -1))

    def torch(self, bits: torch.Tensor) -> torch.Tensor:
        # the ±1 dot product = 2 * popcount(XNOR) - fan_in
        dot = self.torch_dot(bits.double() * 2 - 1, self._weight_pm)
        pc = ((dot + self.fan_in) / 2).round().to(torch.int64)
        thr = self.array("threshold")
        if thr is None:
            return pc
        view = (1, -1) + (1,) * (pc.dim() - 2)
        return (pc >= torch.from_numpy(thr.astype(np.int64)).view(view)).to(torch.int64)

    @classmethod
    def export_binary_layer(cls, ctx, name: str, bits: np.ndarray, fan_in: int, layer: dict, norm: type,
                            following: list[nn.Module]) -> int:
        """Write ``layer`` with weight ``bits`` (a 0/1 matrix ``[outputs, fan_in]``); a ``norm`` BatchNorm and
        a Sign after it fold into thresholds (a negative scale inverts the row's weights); without them it
        must be the last layer, a Scale after it dropped. Returns how many following modules it took."""
        arrays = {}
        layer = {"name": name, "op": cls.op, **layer, "weights": f"{name}.weight"}
        if len(following) >= 2 and isinstance(following[0], norm) and isinstance(following[1], Sign):
            bn = following[0]
            thr = np.empty(len(bits), dtype=np.int32)
            for j in range(len(bits)):
                t, flip = fold_threshold(fan_in, float(bn.running_mean[j]), float(bn.running_var[j]), bn.eps,
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
