"""The golden model: an integer model description run with numpy integer operations only.

This is the single reference every hardware testbench compares against. The only floating-point
step is the input quantizer (a power-of-two scaling, exact in float64); everything after it is
int64 arithmetic, and binary layers run on bit-packed 64-bit words with XNOR and popcount
(``numpy.bitwise_count``). Each op's arithmetic is its class's ``golden`` method (:mod:`fxp.ops`);
this module runs them in order. ``run`` returns every layer's integer outputs; bit outputs are
returned as 0/1 arrays (1 meaning +1).
"""

from __future__ import annotations

import numpy as np

from fxp.fxpm import Model


def quantize_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Float inputs (N, *shape) → int64 values or 0/1 bits, as the description's input quantizer says."""
    return model.input.golden(np.asarray(x, dtype=np.float64).reshape((len(x), *model.input.shape)))


def run(model: Model, x: np.ndarray, batch: int = 1000) -> list[np.ndarray]:
    """Every layer's integer outputs for float inputs ``x``: [quantized input, layer 1, layer 2, ...]."""
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(x), batch):
        a = quantize_input(model, x[i : i + batch])
        seq = [a]
        for op in model.ops:
            a = op.golden(a)
            seq.append(a)
        outs.append(seq)
    return [np.concatenate(parts) for parts in zip(*outs)]
