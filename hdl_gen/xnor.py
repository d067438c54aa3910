"""XNOR-popcount matrix-vector-threshold unit (FINN's MVAU for binary layers), in Amaranth.

One input transfer carries a whole input vector of ``MW`` bits (bit 1 means +1, bit 0 means -1,
bit ``k`` of the payload is input ``k``). The unit folds the ``MH x MW`` binary matrix over time:
``PE`` outputs in parallel, ``SIMD`` input bits per cycle, so a vector takes ``NF x SF`` cycles
(``NF = MH / PE``, ``SF = MW / SIMD``). Each output transfer carries ``PE`` lanes, little-endian:
lane ``p`` of output transfer ``n`` is output ``n * PE + p``. A lane is one bit
(``popcount >= threshold``) when thresholds are given, else the popcount itself.

Bit-exact with :func:`fxp.bits.xnor_popcount` and the ``binary_dense`` layer of the integer model
description, which tests check in simulation.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.errors import FxpError
from hdl_gen import dp16kd
from hdl_gen.adders import accumulate
from hdl_gen.compressor import compressor_cuts, compressor_trees, term_value
from hdl_gen.memories import READ_LATENCY, align_to_read, check_capacity, pack, read_rom, rom
from hdl_gen.options import PIPELINE, POPCOUNT, TABLE_BITS, WEIGHTS_IN, refused_quietly
from hdl_gen.pipeline import Slice, pipelined, register, register_slice, wires
from hdl_gen.schedule import Issued, check_folding, fold_unit


def at_least(x: Value, t: int) -> Value:
    """``x >= t`` for a constant ``t``, as AND/OR logic from the least significant bit up.

    A comparator becomes a carry chain, whose entry and exit each take a cell (on ECP5 a CCU2C is two
    LUT4 positions); a function of a few bits fits a few LUT4s. ``G_i = x_i & G_(i-1)`` where bit
    ``i`` of ``t`` is 1, else ``x_i | G_(i-1)``, from ``G_(-1) = 1`` (kept as None: no constants to lint).
    ``t`` is not negative.
    """
    if t < 0:
        raise FxpError(f"at_least compares with a threshold of 0 or more, not {t}")
    if t >= 1 << len(x):
        return Const(0, 1)
    ge = None
    for i in range(len(x)):
        if (t >> i) & 1:
            ge = x[i] if ge is None else x[i] & ge
        elif ge is not None:
            ge = x[i] | ge
    return Const(1, 1) if ge is None else ge


class XnorPopcountUnit(wiring.Component):
    """Binary matrix-vector unit with optional per-output thresholds.

    Parameters
    ----------
    weights:
        0/1 array ``(MH, MW)``: row ``r`` holds output ``r``'s weights (1 means +1).
    thresholds:
        ``MH`` integers in ``0..MW+1`` (output bit ``popcount >= T``), or None for raw popcounts.
        With the tree popcount nothing compares: the output is bit ``W`` of ``popcount + 2^W - T``,
        the offset added as constant bits in the compressor or as the accumulator's start.
    pe, simd:
        Parallel outputs and parallel input bits; ``MH % PE == 0`` and ``MW % SIMD == 0``.
    weights_in:
        ``"logic"``: constants in LUTs (free XNORs when nothing is folded); ``"bram"``: a block RAM
        read one cycle ahead (one more pipeline stage); ``"dp16kd"``: ECP5 block RAM through its
        output register (two more stages; :mod:`hdl_gen.dp16kd`).
    table_bits:
        None: the block RAM holds weight words. A number (block RAM only): it holds tables of counts
        instead, each addressed by at most ``table_bits`` bits: the fold index (``ceil(log2(NF x SF))`` bits)
        and ``k`` inputs, and holding every lane's count of those inputs that agree with its weights
        (``bits_for(k)`` bits a lane). The RAM then does the XNORs and the compressor's first layers,
        and a lane sums a few multi-bit counts: fewer LUTs, more block RAM. With PE = 1 and SF > 1 a
        table reads ``k`` inputs of every slice where at least two of each fit, and the slice mux
        goes away. More bits: fewer, deeper tables; iCE40 block RAM is 4 Kbit (256 x 16 to 2048 x 2),
        ECP5's 18 Kbit (1024 x 18 to 16384 x 1); ``dp16kd`` takes at most 9 (512 words).
    pipeline:
        Registers after the XNORs (where the weights change: with constant weights an XNOR is an
        inversion, which the popcount's full adders absorb), in the popcount's compressor (after its
        first layer of full adders where outputs share counters, else after its second, then every
        ``csa_every`` layers), between the popcount and the accumulator, after the accumulator (not
        where thresholds and nothing folded make the output the compressor's top bit), and a skid
        register on the output, for Fmax. Results are identical; only the
        latency grows.
    popcount:
        ``"tree"``: a carry-save compressor (a Wallace tree of full adders over the bit columns of the
        terms, then one adder: :func:`hdl_gen.compressor.compressor_trees`); ``"chain"``: a chained sum of
        bits, the naive baseline. When the weights are constants (nothing folded) and PE > 1, the
        tree's terms are 3-input counters that the outputs share (see :meth:`_shared_plan`): fewer
        LUTs per synapse.

    Members
    -------
    i: ``In(stream.Signature(MW))`` — input vectors.
    o: ``Out(stream.Signature(PE * lane_width))`` — ``PE`` results per transfer.
    latency: clock edges from the one that accepts an input to the one that raises its first output
        (no stalls): SF plus the pipeline stages.
    in_lane_width, in_lane_signed, out_lane_width, out_lane_signed: the lanes of ``i`` (bits) and ``o``
        (``lane_width``: 1 with thresholds, else the popcount's width), all unsigned.
    accumulator_bits: the popcount's width, ``bits_for(MW)``.
    shared, counters: whether outputs share 3-input counters, and how many counters there are.
    tables: how many count tables there are (0: weight words).
    """

    kind = "xnor"
    OPTIONS = (PIPELINE, WEIGHTS_IN, POPCOUNT, TABLE_BITS)
    csa_every = 2  # layers of full adders between pipeline registers
    in_lane_width, in_lane_signed, out_lane_signed = 1, False, False  # input bits; thresholded bits or popcounts

    @refused_quietly
    def __init__(self, weights: np.ndarray, thresholds: np.ndarray | None, pe: int, simd: int, *,
                 weights_in: str = "logic", pipeline: bool = False, popcount: str = "tree",
                 table_bits: int | None = None) -> None:
        w = np.asarray(weights)
        if w.ndim != 2 or not np.isin(w, (0, 1)).all():
            raise FxpError("weights must be a 0/1 matrix of shape (MH, MW)")
        self.mh, self.mw = w.shape
        check_folding(self.mh, self.mw, pe, simd)
        POPCOUNT.check(popcount)
        WEIGHTS_IN.check(weights_in)
        PIPELINE.check(pipeline)
        if thresholds is not None:
            thresholds = np.asarray(thresholds, dtype=np.int64)
            if thresholds.shape != (self.mh,) or thresholds.min() < 0 or thresholds.max() > self.mw + 1:
                raise FxpError(f"thresholds must be {self.mh} integers in 0..{self.mw + 1}")
        self.weights, self.thresholds, self.pe, self.simd = w.astype(np.uint8), thresholds, pe, simd
        self.weights_in, self.pipeline, self.popcount = weights_in, bool(pipeline), popcount
        self.nf, self.sf = self.mh // pe, self.mw // simd
        if table_bits is None:
            check_capacity(weights_in, self.nf * self.sf)  # one weight word per issued slice
        else:
            self._check_tables(weights_in, popcount, table_bits)
        self.table_bits = table_bits
        self.acc_width = bits_for(self.mw)  # popcounts reach MW exactly: the least width that cannot overflow
        self.lane_width = 1 if thresholds is not None else self.acc_width
        self.out_lane_width, self.accumulator_bits = self.lane_width, self.acc_width
        # popcount >= T is the top bit of popcount + 2^W - T: an offset that the compressor takes as constant
        # bits (nothing folded) or the accumulator starts from (a ROM word where NF > 1), so no comparator.
        self._offsets = ([(1 << self.acc_width) - int(t) for t in thresholds]
                         if thresholds is not None and popcount == "tree" else None)
        self._tree_offsets = self._offsets if self._offsets and self.nf == 1 and self.sf == 1 else []
        # Constant weights (nothing folded) and more than one output: outputs share 3-input counters.
        self.shared = popcount == "tree" and table_bits is None and self.nf == 1 and self.sf == 1 and pe > 1
        self._plan = self._shared_plan() if self.shared else None
        self.counters = len(self._plan[0]) if self.shared else 0
        # Where outputs share counters, these and the compressor's first layer make one cycle's logic
        # (registering the counters themselves cost 7 % more LUT4 sites at 64x16 on the iCE40, at the same Fmax).
        self._csa_first = 1 if self.shared else self.csa_every
        # A weight that changes (an XNOR gate) or a table's word: a fabric register behind the ROM or RAM read
        self._read_stage = self.pipeline and (self.nf * self.sf > 1 or table_bits is not None)
        # the count's register, and the accumulator's unless the offsets made the output the count's top bit
        stages = READ_LATENCY[weights_in] + int(self._read_stage) + (1 + (not self._tree_offsets) if self.pipeline else 0)
        if self.pipeline and popcount == "tree":
            stages += compressor_cuts(self._leaf_widths(), self.csa_every, self._csa_first, self._tree_offsets)
        self.latency = self.sf + stages
        self.tables = len(self._groups) if table_bits is not None else 0
        self.cycles_per_vector = self.nf * self.sf
        super().__init__({
            "i": In(stream.Signature(unsigned(self.mw))),  # bit k is input k: the lanes are the bits
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(self.lane_width), pe))),
        })

    def _check_tables(self, weights_in: str, popcount: str, table_bits: int) -> None:
        """Check the count tables' options (or say which to change) and settle their geometry."""
        if weights_in == "logic":
            raise FxpError("count tables (table_bits) live in block RAM; use weights_in='bram' or 'dp16kd' with them")
        if popcount != "tree":
            raise FxpError("count tables sum their counts in the compressor; popcount='chain' is for weight words")
        top = dp16kd.HALF.bit_length() - 1 if weights_in == "dp16kd" else 16
        if not isinstance(table_bits, int) or isinstance(table_bits, bool) or not 1 <= table_bits <= top:
            raise FxpError(f"table_bits must be a whole number from 1 to {top} (address bits of a table"
                           f"{', 512 words in a DP16KD' if top < 16 else ''}), got {table_bits!r}")
        self._fold_bits = (self.nf * self.sf - 1).bit_length()
        free = table_bits - self._fold_bits
        if free < 1:
            raise FxpError(f"table_bits={table_bits} leaves no address bit for inputs beside the {self._fold_bits} "
                           f"that select one of the NF x SF = {self.nf * self.sf} folds; raise table_bits or fold less")
        # With one lane the slice mux costs a LUT per input, which the tables avoid by reading the inputs of
        # every slice (the fold says which count); wider units share the mux across their lanes.
        self._table_slices = self.sf if self.pe == 1 and self.sf > 1 and free // self.sf >= 2 else 1
        k = free // self._table_slices
        self._groups = [(j, min(k, self.simd - j)) for j in range(0, self.simd, k)]

    def _leaf_widths(self) -> list[int]:
        """The widths of an output's popcount terms: 2-bit shared counters and 1-bit tail inputs, or SIMD bits."""
        if self.table_bits is not None:
            return [bits_for(k) for _, k in self._groups]
        if self.shared:
            return [2] * (self.simd // 3) + [1] * (self.simd % 3)
        return [1] * self.simd

    def _shared_plan(self) -> tuple[list, list[list]]:
        """Which 3-input counters outputs with constant weights share, and each output's popcount leaves.

        The inputs go in groups of three. A group's count under output ``p`` is ``popcount(x ^ c)`` with
        ``c = ~w`` (XNOR with a constant is XOR with its complement); ``c`` and ``~c`` give ``s`` and
        ``3 - s``, and ``3 - s`` is ``~s`` in two bits, so one full adder per group and pattern pair
        (at most four per group) serves all outputs: a plain inversion, no constant, tells them apart.
        Each counter takes the pattern more of its outputs use (ties: bit 0 clear), so fewer leaves are
        inverted: the compressor's full adders absorb an inversion (and carry it past its registers as
        a mask), but a leaf bit that reaches the final adder's carry chain untouched needs a LUT of its own.
        Returns the counters as (group start, pattern) and, per output, its leaves as ``(source, mask)``:
        a counter and 3 (inverted) or 0, or a tail input ``j`` (where MW is not a multiple of three) and
        1 or 0; the leaf is ``source ^ mask``.
        """
        full = self.simd - self.simd % 3
        # per output, its groups as (group start, pattern): c = ~w over the group's three inputs
        groups = [[(g, sum((1 - int(self.weights[p, g + k])) << k for k in range(3))) for g in range(0, full, 3)]
                  for p in range(self.pe)]
        votes = {}  # (group start, pattern up to complement) -> {pattern: outputs}; dicts keep first-use order
        for row in groups:
            for g, c in row:
                tally = votes.setdefault((g, min(c, c ^ 7)), {})
                tally[c] = tally.get(c, 0) + 1
        chosen = {cls: min(tally, key=lambda c: (-tally[c], c & 1)) for cls, tally in votes.items()}
        leaves = []
        for p, row in enumerate(groups):
            counted = [((g, chosen[g, min(c, c ^ 7)]), 0 if c == chosen[g, min(c, c ^ 7)] else 3) for g, c in row]
            leaves.append(counted + [(j, 1 - int(self.weights[p, j])) for j in range(full, self.simd)])
        return [(g, c) for (g, _), c in chosen.items()], leaves

    def _weight_words(self) -> list[int]:
        """ROM contents: entry ``nf * SF + sf`` holds PE x SIMD weight bits, lane-major."""
        pe, simd = self.pe, self.simd
        return [pack(self.weights[nf * pe : (nf + 1) * pe, sf * simd : (sf + 1) * simd].ravel())
                for nf in range(self.nf) for sf in range(self.sf)]

    def _xnor_lanes(self, m: Module, issued: Issued) -> tuple[Slice, list[list]]:
        """Per lane, its popcount's terms: XNORs of the inputs with weights from logic or block RAM
        (constants: inversions; shared counters where outputs share them), and the slice they belong to."""
        pe, simd, en = self.pe, self.simd, issued.en
        w = read_rom(m, "wrom", pe * simd, self._weight_words(), issued.addr, en, self.weights_in)
        slice_, (x,) = align_to_read(m, en, issued.slice, [issued.x], self.weights_in)
        if self.shared:
            counters, plan = self._plan
            tail = range(simd - simd % 3, simd)
            values = [*(sum(x[g + k] ^ ((c >> k) & 1) for k in range(3))[:2] for g, c in counters),
                      *(x[j] for j in tail)]
            wired = dict(zip([*counters, *tail], wires(m, "counter", values)))  # each counter feeds many outputs
            lanes = [[(wired[src], mask) for src, mask in leaves] for leaves in plan]
        elif self.nf * self.sf == 1:  # constant weights: an XNOR is an inversion, which the popcount absorbs
            lanes = [[(x[j], 1 - int(self.weights[p, j])) for j in range(simd)] for p in range(pe)]
        else:
            agree = Signal(pe * simd)
            if self._read_stage and self.weights_in != "logic":
                # A block RAM word arrives as bits: registered as they are, the XNORs fall into the
                # compressor's first full adders (registered XNORs: 11 % more LUT4 sites at 128x16).
                slice_, (x, w) = register_slice(m, en, "xnor", slice_, [x, w])
            m.d.comb += agree.eq(~(x.replicate(pe) ^ w))
            if self._read_stage and self.weights_in == "logic":  # a ROM in LUTs computes the XNOR with its bit
                slice_, (agree,) = register_slice(m, en, "xnor", slice_, [agree])
            lanes = [[agree[p * simd + j] for j in range(simd)] for p in range(pe)]
        return slice_, lanes

    def _table_words(self, j0: int, k: int) -> list[int]:
        """Table contents: at ``fold << (n k) | x`` (``x``: ``k`` inputs from each of the ``n`` slices the
        table reads), lane ``p``'s count of the inputs of the fold's slice that agree with its
        weights at positions ``j0 ..``, ``bits_for(k)`` bits a lane."""
        n, cw = self._table_slices, bits_for(k)
        xs = np.arange(1 << (n * k))
        ones = np.array([v.bit_count() for v in range(1 << k)])
        words = np.zeros((1 << self._fold_bits) << (n * k), dtype=object)
        for nf in range(self.nf):
            for sf in range(self.sf):
                a, word = nf * self.sf + sf, np.zeros(len(xs), dtype=object)
                field = (xs >> (k * sf)) & ((1 << k) - 1) if n > 1 else xs
                for p in range(self.pe):
                    w = pack(self.weights[nf * self.pe + p, sf * self.simd + j0 : sf * self.simd + j0 + k])
                    word += (k - ones[field ^ w]).astype(object) * (1 << (p * cw))
                words[a * len(xs) : (a + 1) * len(xs)] = word
        return [int(v) for v in words]

    def _tables(self, m: Module, issued: Issued) -> tuple[Slice, list[list]]:
        """Block RAM tables that count agreeing inputs: each is read at (fold, a few input bits) and
        holds every lane's count, so the XNORs and the compressor's first layers are in the RAM."""
        outs, n = [], self._table_slices
        for g, (j0, k) in enumerate(self._groups):
            x = (issued.x[j0 : j0 + k] if n == 1
                 else Cat(*(issued.vector[sf * self.simd + j0 :][:k] for sf in range(n))))
            # nothing folded: no fold index (issued.addr is then a placeholder constant, not an address bit)
            outs.append(read_rom(m, f"table{g}", self.pe * bits_for(k), self._table_words(j0, k),
                                 Cat(x, issued.addr) if self._fold_bits else x, issued.en, self.weights_in))
        slice_, _ = align_to_read(m, issued.en, issued.slice, [], self.weights_in)
        if self._read_stage:
            slice_, outs = register_slice(m, issued.en, "table", slice_, outs)
        widths = self._leaf_widths()
        return slice_, [[outs[g][p * cw : (p + 1) * cw] for g, cw in enumerate(widths)] for p in range(self.pe)]

    def _group_rom(self, m: Module, name: str, values, width: int, group: Value) -> Value:
        """A ROM of per-output ``values``, ``width`` bits a lane, read at output ``group`` (where it is current)."""
        words = [pack(values[n * self.pe : (n + 1) * self.pe], width) for n in range(self.nf)]
        return rom(m, name, self.pe * width, words, group)

    def _offset_word(self, m: Module, group: Value) -> Value | None:
        """The accumulators' starting offsets of output ``group``, every lane's in one word (None where
        they are constants or there are none)."""
        if self._tree_offsets or self._offsets is None or self.nf == 1:
            return None
        return self._group_rom(m, "offsets", self._offsets, self.acc_width + 1, group)

    def _totals(self, m: Module, en: Value, slice_: Slice, counts: list, word: Value | None) -> list:
        """Per lane, what the output takes: the running popcount, or the top bit of the offset sum
        (the compressor's own where nothing is folded, else the accumulator's, which starts from the offset:
        ``word``, :meth:`_offset_word`'s for this slice's group)."""
        if self._tree_offsets:
            return counts
        if self._offsets is None:
            return accumulate(m, en, slice_, counts, unsigned(self.acc_width))
        width = self.acc_width + 1  # popcount + 2^W - T < 2^(W+1)
        starts = self._offsets if word is None else [word[p * width : (p + 1) * width] for p in range(self.pe)]
        return [t[-1] for t in accumulate(m, en, slice_, counts, unsigned(width), starts)]

    def elaborate(self, platform) -> Module:
        m = Module()
        pe, acc_w = self.pe, self.acc_width
        issued, output = fold_unit(m, self)
        en = issued.en
        slice_, lanes = (self._xnor_lanes if self.table_bits is None else self._tables)(m, issued)
        if self.popcount == "chain":
            counts = []
            for bits in lanes:  # the naive popcount: one adder after another
                total = Const(0, acc_w)
                for b in bits:
                    total = (total + term_value(b))[:acc_w]
                counts.append(total)
        else:
            offsets = self._tree_offsets
            counts, slice_ = pipelined(m, en, slice_, self.pipeline, lambda cut: compressor_trees(
                m, lanes, cut, self.csa_every, self._csa_first, offsets, acc_w if offsets else None))
        word = self._offset_word(m, slice_.group)
        if self.pipeline:  # the popcount's last adder and the accumulator's carry chain in separate cycles
            slice_, counts = register_slice(m, en, "count", slice_, counts)
            # the offsets' ROM read a cycle ahead, beside the counts: read after the register, its LUTs
            # and the accumulator's carry chain made the SFC's critical path (124 MHz on ECP5-85F)
            word = None if word is None else register(m, en, "offsets_next", word)
        totals = self._totals(m, en, slice_, counts, word)
        valid = slice_.valid & slice_.last
        tw = bits_for(self.mw + 1)
        thresholds = []  # the chained popcount's compare, where the thresholds change with the output group
        if self._offsets is None and self.thresholds is not None and self.nf > 1:
            thresholds = [self._group_rom(m, "trom", self.thresholds, tw, slice_.group)]
        if self.pipeline and not self._tree_offsets:  # the accumulator's carry chain ends at a register
            valid = register(m, en, "acc_valid", valid, reset=True)
            totals = [register(m, en, f"acc_t{p}", t) for p, t in enumerate(totals)]
            thresholds = [register(m, en, "acc_thr", t) for t in thresholds]
        if self.thresholds is None or self._offsets:  # raw popcounts, or the offset sums' top bits
            results = totals
        elif self.nf == 1:  # the chained popcount's constant thresholds: logic, not a comparator
            results = [at_least(totals[p], int(self.thresholds[p])) for p in range(pe)]
        else:
            results = [totals[p] >= thresholds[0][p * tw : (p + 1) * tw] for p in range(pe)]
        for p, y in enumerate(results):
            m.d.comb += output.lanes[p].eq(y)
        m.d.comb += output.valid.eq(valid)
        return m

    @staticmethod
    def estimate(mw: int, mh: int, pe: int, simd: int, weight_bits: int = 1, table_entries: int = 0) -> dict:
        """Rough cost of a unit of this shape, for folding tables: about 2 LUT4 per synapse evaluated per
        cycle (1 to 4.4 measured by bench/bench_hw.py on the iCE40, docs/benchmarks.md) and a few per
        lane; the input vector and each lane's accumulator in flip-flops; weights stored where folded
        (bits, no codebook: ``table_entries`` is always 0, see :meth:`weight_storage`)."""
        folded = (mh // pe) * (mw // simd) > 1
        return {"lut4": 2 * pe * simd + 8 * pe, "ff": mw + pe * (bits_for(mw) + 2), "dsp": 0,
                "weight_bits": mw * mh * weight_bits if folded else 0}

    @staticmethod
    def weight_storage(op, **_) -> tuple[int, int]:
        """The bits of one stored weight of ``op`` (a bit) and the entries of its table (none), for folding."""
        return 1, 0

    @staticmethod
    def random_layer(mw: int, mh: int, seed: int):
        """A random one-layer description this unit builds: binary_dense with thresholds in 0..MW+1."""
        from fxp import fxpm

        rng = np.random.default_rng(seed)
        spec = {"format": "fxpm", "version": 1, "name": "unit",
                "input": {"shape": [mw], "quantizer": {"kind": "binarize", "threshold": 0.5}},
                "layers": [{"name": "layer", "op": "binary_dense", "out_features": mh, "weights": "w", "threshold": "t"}]}
        arrays = {"w": np.packbits(rng.integers(0, 2, (mh, mw)).astype(np.uint8), axis=1, bitorder="little"),
                  "t": rng.integers(0, mw + 2, mh).astype(np.int32)}
        return fxpm.Model(spec, arrays)

    @classmethod
    def from_op(cls, op, pe: int, simd: int, columns=None, **options) -> XnorPopcountUnit:
        """The unit for a binary op of a description (``binary_dense``; a ``binary_conv2d`` one window at a
        time), its weight columns reordered by ``columns`` where given (unit column ``k`` is the op's
        ``columns[k]``)."""
        bits = op.weight_bits()  # [outputs, fan_in]: a convolution's kernels flattened in (c, u, v) order
        return cls(bits if columns is None else bits[:, columns], op.array("threshold"), pe, simd, **options)

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int, **options) -> XnorPopcountUnit:
        """The unit for the ``binary_dense`` layer ``name`` of ``model``."""
        op = model.op(name)
        if op.engine != cls.kind:
            raise FxpError(f"layer {name!r} is {op.op}, which the {cls.kind} unit does not build")
        return cls.from_op(op, pe, simd, **options)
