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
from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.errors import FxpError
from hdl_gen.fold import adder_trees, check_choice, check_folding, folded_issue, rom, stage, tree_cuts


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
    weights_in:
        ``"logic"``: constants in LUTs (free XNORs when nothing is folded); ``"bram"``: a block RAM
        read one cycle ahead (one more pipeline stage).
    pipeline:
        Registers after the XNORs, after every popcount-tree level from ``tree_first`` on (the first
        levels stay combinational so synthesis compresses the 1-bit leaves with full adders), between
        the popcount and the accumulator, and before the threshold compare, for Fmax. Results are
        identical; only the latency grows.
    popcount:
        ``"tree"``: a balanced adder tree; ``"chain"``: a chained sum of bits, the naive baseline.

    Members
    -------
    i: ``In(stream.Signature(MW))`` — input vectors.
    o: ``Out(stream.Signature(PE * lane_width))`` — ``PE`` results per transfer.
    latency: clock edges from the one that accepts an input to the one that raises its first output
        (no stalls): SF plus the pipeline stages.
    """

    tree_first, tree_every = 3, 1

    def __init__(self, weights: np.ndarray, thresholds: np.ndarray | None, pe: int, simd: int, *,
                 weights_in: str = "logic", pipeline: bool = False, popcount: str = "tree") -> None:
        w = np.asarray(weights)
        if w.ndim != 2 or not np.isin(w, (0, 1)).all():
            raise FxpError("weights must be a 0/1 matrix of shape (MH, MW)")
        self.mh, self.mw = w.shape
        check_folding(self.mh, self.mw, pe, simd)
        check_choice("weights_in", weights_in, ("logic", "bram"))
        check_choice("popcount", popcount, ("tree", "chain"))
        if thresholds is not None:
            thresholds = np.asarray(thresholds, dtype=np.int64)
            if thresholds.shape != (self.mh,) or thresholds.min() < 0 or thresholds.max() > self.mw + 1:
                raise FxpError(f"thresholds must be {self.mh} integers in 0..{self.mw + 1}")
        self.weights, self.thresholds, self.pe, self.simd = w.astype(np.uint8), thresholds, pe, simd
        self.weights_in, self.pipeline, self.popcount = weights_in, bool(pipeline), popcount
        self.nf, self.sf = self.mh // pe, self.mw // simd
        self.acc_width = bits_for(self.mw)  # popcounts reach MW exactly: the least width that cannot overflow
        self.lane_width = 1 if thresholds is not None else self.acc_width
        stages = (weights_in == "bram") + (3 if self.pipeline else 0)
        if self.pipeline and popcount == "tree":
            stages += tree_cuts(simd, self.tree_every, self.tree_first)
        self.latency = self.sf + stages
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
        en = Signal()
        m.d.comb += en.eq(~(self.o.valid & ~self.o.ready))
        iss = folded_issue(m, self, 1, en)
        meta = {"nf": iss.nf, "first": iss.first, "last": iss.last, "valid": iss.valid}
        if self.weights_in == "bram":
            w, addr = rom(m, "wrom", pe * simd, self._weight_words(), domain="sync", en=en, block_ram=True)
            if addr is not None:
                m.d.comb += addr.eq(iss.addr)
            s = stage(m, en, "fetch", {"x": iss.x, **meta})
        else:
            w, addr = rom(m, "wrom", pe * simd, self._weight_words())
            if addr is not None:
                m.d.comb += addr.eq(iss.addr)
            s = {"x": iss.x, **meta}
        agree = Signal(pe * simd)
        m.d.comb += agree.eq(~(s["x"].replicate(pe) ^ w))
        if self.pipeline:
            s = stage(m, en, "xnor", {"agree": agree, **{k: s[k] for k in meta}})
            agree = s["agree"]
        lanes = [[agree[p * simd + j] for j in range(simd)] for p in range(pe)]
        if self.popcount == "chain":
            counts = []
            for bits in lanes:  # the naive popcount: one adder after another
                total = Const(0, acc_w)
                for b in bits:
                    total = (total + b)[:acc_w]
                counts.append(total)
        else:
            counts, s = self._tree(m, en, lanes, s, meta)
        if self.pipeline:  # the popcount's last adder and the accumulator's carry chain in separate cycles
            s = stage(m, en, "count", {**{k: s[k] for k in meta}, **{f"c{p}": c for p, c in enumerate(counts)}})
            counts = [s[f"c{p}"] for p in range(pe)]

        accs = [Signal(acc_w, name=f"acc{p}") for p in range(pe)]
        totals = []
        for p in range(pe):
            total = Signal(acc_w, name=f"total{p}")
            m.d.comb += total.eq(Mux(s["first"], 0, accs[p]) + counts[p])
            with m.If(en & s["valid"]):
                m.d.sync += accs[p].eq(total)
            totals.append(total)
        out = {"nf": s["nf"], "valid": s["valid"] & s["last"]}
        if self.pipeline:  # the threshold compare gets a cycle of its own
            out = stage(m, en, "acc", {**out, **{f"t{p}": t for p, t in enumerate(totals)}})
            totals = [out[f"t{p}"] for p in range(pe)]
        if self.thresholds is not None:
            tw = bits_for(self.mw + 1)
            tinit = [sum(int(self.thresholds[n * pe + p]) << (p * tw) for p in range(pe)) for n in range(self.nf)]
            thr, taddr = rom(m, "trom", pe * tw, tinit)
            if taddr is not None:
                m.d.comb += taddr.eq(out["nf"])
            results = [totals[p] >= thr[p * tw : (p + 1) * tw] for p in range(pe)]
            if self.nf == 1:  # constant thresholds: T = 0 always passes (and `x >= 0` lints as constant)
                results = [Const(1, 1) if self.thresholds[p] == 0 else r for p, r in enumerate(results)]
        else:
            results = totals
        with m.If(self.o.valid & self.o.ready):  # before the set below, so a new result wins
            m.d.sync += self.o.valid.eq(0)
        with m.If(en & out["valid"]):
            m.d.sync += self.o.valid.eq(1)
            for p, r in enumerate(results):
                m.d.sync += self.o.payload[p * self.lane_width : (p + 1) * self.lane_width].eq(r)
        return m

    def _tree(self, m: Module, en, lanes: list[list], s: dict, meta: dict) -> tuple[list, dict]:
        """Popcount trees for all PE lanes, cut into pipeline stages when ``pipeline``; (counts, metadata)."""
        n = 0

        def cut(values: list) -> list:
            nonlocal s, n
            r = stage(m, en, f"tree{n}", {**{k: s[k] for k in meta}, **{f"v{i}": v for i, v in enumerate(values)}})
            n += 1
            s = r
            return [r[f"v{i}"] for i in range(len(values))]

        counts = adder_trees(lanes, cut if self.pipeline else None, self.tree_every, self.tree_first)
        return counts, s

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int, **options) -> XnorPopcountUnit:
        """The unit for the ``binary_dense`` layer ``name`` of an integer model description."""
        layer = next((layer for layer in model.layers if layer["name"] == name), None)
        if layer is None or layer["op"] != "binary_dense":
            raise FxpError(f"{name!r} is not a binary_dense layer of this model; binary layers: "
                           + ", ".join(x["name"] for x in model.layers if x["op"] == "binary_dense"))
        i = model.layers.index(layer)
        k = model.shapes[i - 1][0] if i else int(np.prod(model.spec["input"]["shape"]))
        bits = np.unpackbits(model.array(layer, "weights"), axis=1, count=k, bitorder="little")
        return cls(bits, model.array(layer, "threshold"), pe, simd, **options)
