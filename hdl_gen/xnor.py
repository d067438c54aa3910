"""XNOR-popcount matrix-vector-threshold unit (FINN's MVAU for binary layers), in Amaranth.

One input transfer carries a whole input vector of ``MW`` bits (bit 1 means +1, bit 0 means -1,
bit ``k`` of the payload is input ``k``). The unit folds the ``MH x MW`` binary matrix over time:
``PE`` outputs in parallel, ``SIMD`` input bits per cycle, so a vector takes ``NF x SF`` cycles
(``NF = MH / PE``, ``SF = MW / SIMD``). Each output transfer carries ``PE`` lanes, little-endian:
lane ``p`` of output transfer ``n`` is output ``n * PE + p``. A lane is one bit
(``popcount >= threshold``) when thresholds are given, else the popcount itself.

Bit-exact with :func:`sim.golden.xnor_popcount` and the ``binary_dense`` layer of the integer model
description, which tests check in simulation.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.errors import FxpError
from hdl_gen.fold import adder_tree, folded_schedule


class XnorPopcountUnit(wiring.Component):
    """Binary matrix-vector unit with optional per-output thresholds.

    Parameters
    ----------
    weights:
        0/1 array ``(MH, MW)``: row ``r`` holds output ``r``'s weights (1 means +1).
    thresholds:
        ``MH`` integers in ``0..MW+1`` (output bit ``popcount >= T``), or None for raw popcounts.
    pe, simd:
        Parallel outputs and parallel input bits; ``MH % PE == 0`` and ``MW % SIMD == 0``.

    Members
    -------
    i: ``In(stream.Signature(MW))`` — input vectors.
    o: ``Out(stream.Signature(PE * lane_width))`` — ``PE`` results per transfer.
    """

    def __init__(self, weights: np.ndarray, thresholds: np.ndarray | None, pe: int, simd: int) -> None:
        w = np.asarray(weights)
        if w.ndim != 2 or not np.isin(w, (0, 1)).all():
            raise FxpError("weights must be a 0/1 matrix of shape (MH, MW)")
        self.mh, self.mw = w.shape
        for name, v in (("PE", pe), ("SIMD", simd)):
            if not isinstance(v, int) or v < 1:
                raise FxpError(f"{name} must be a positive whole number, got {v!r}")
        if self.mh % pe:
            raise FxpError(f"MH={self.mh} is not a multiple of PE={pe}; choose PE among the divisors of MH")
        if self.mw % simd:
            raise FxpError(f"MW={self.mw} is not a multiple of SIMD={simd}; choose SIMD among the divisors of MW")
        if thresholds is not None:
            thresholds = np.asarray(thresholds, dtype=np.int64)
            if thresholds.shape != (self.mh,) or thresholds.min() < 0 or thresholds.max() > self.mw + 1:
                raise FxpError(f"thresholds must be {self.mh} integers in 0..{self.mw + 1}")
        self.weights, self.thresholds, self.pe, self.simd = w.astype(np.uint8), thresholds, pe, simd
        self.nf, self.sf = self.mh // pe, self.mw // simd
        self.acc_width = bits_for(self.mw)  # popcounts reach MW exactly: the least width that cannot overflow
        self.lane_width = 1 if thresholds is not None else self.acc_width
        super().__init__({
            "i": In(stream.Signature(unsigned(self.mw))),
            "o": Out(stream.Signature(unsigned(pe * self.lane_width))),
        })

    def _weight_words(self) -> list[int]:
        """ROM contents: entry ``nf * SF + sf`` holds PE x SIMD weight bits, lane-major."""
        words = []
        for nf in range(self.nf):
            for sf in range(self.sf):
                word = 0
                for p in range(self.pe):
                    row = self.weights[nf * self.pe + p, sf * self.simd : (sf + 1) * self.simd]
                    for j, bit in enumerate(row):
                        word |= int(bit) << (p * self.simd + j)
                words.append(word)
        return words

    def elaborate(self, platform) -> Module:
        m = Module()
        pe, simd, acc_w = self.pe, self.simd, self.acc_width
        m.submodules.wrom = wrom = Memory(shape=unsigned(pe * simd), depth=self.nf * self.sf,
                                          init=self._weight_words())
        wport = wrom.read_port(domain="comb")
        tport = None
        if self.thresholds is not None:
            tw = bits_for(self.mw + 1)
            tinit = [sum(int(self.thresholds[n * pe + p]) << (p * tw) for p in range(pe)) for n in range(self.nf)]
            m.submodules.trom = trom = Memory(shape=unsigned(pe * tw), depth=self.nf, init=tinit)
            tport = trom.read_port(domain="comb")

        accs = [Signal(acc_w, name=f"acc{p}") for p in range(pe)]
        tw = bits_for(self.mw + 1)

        def datapath(x, last, nf):
            for p in range(pe):
                agree = Signal(simd, name=f"xnor{p}")
                m.d.comb += agree.eq(~(x ^ wport.data[p * simd : (p + 1) * simd]))
                total = accs[p] + adder_tree(agree[i] for i in range(simd))  # popcount
                lane = self.o.payload[p * self.lane_width : (p + 1) * self.lane_width]
                with m.If(last):
                    if tport is not None:
                        m.d.sync += lane.eq(total >= tport.data[p * tw : (p + 1) * tw])
                    else:
                        m.d.sync += lane.eq(total)
                    m.d.sync += accs[p].eq(0)
                with m.Else():
                    m.d.sync += accs[p].eq(total)

        nf, sf = folded_schedule(m, self, 1, accs, datapath)
        m.d.comb += wport.addr.eq(nf * self.sf + sf)
        if tport is not None:
            m.d.comb += tport.addr.eq(nf)
        return m

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int) -> XnorPopcountUnit:
        """The unit for the ``binary_dense`` layer ``name`` of an integer model description."""
        layer = next((layer for layer in model.layers if layer["name"] == name), None)
        if layer is None or layer["op"] != "binary_dense":
            raise FxpError(f"{name!r} is not a binary_dense layer of this model; binary layers: "
                           + ", ".join(x["name"] for x in model.layers if x["op"] == "binary_dense"))
        i = model.layers.index(layer)
        k = model.shapes[i - 1][0] if i else int(np.prod(model.spec["input"]["shape"]))
        bits = np.unpackbits(model.array(layer, "weights"), axis=1, count=k, bitorder="little")
        return cls(bits, model.array(layer, "threshold"), pe, simd)
