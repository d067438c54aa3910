"""Integer multiply-accumulate matrix-vector unit for ``dense`` layers, in Amaranth.

The arithmetic of the integer model description, exactly: ``acc = Σ (x − xz)(w − wz) + bias``,
then per output ``(acc · M + 2**(S−1)) >> S`` (ties toward +∞; ``>>`` floors), plus the output zero
point, saturated to the output format (ReLU folded into the lower bound). Every format the
description allows for an integer layer is taken as it is: inputs, weights and outputs of 1 to 16
bits, signed or unsigned. One input transfer carries a whole vector of ``MW`` lanes of the input
format's width (lane ``k`` at bits ``k·IW ..``, read as signed or unsigned as the format says);
``PE`` outputs are computed in parallel from ``SIMD`` products per cycle; each output transfer
carries ``PE`` lanes of the output format's width, signed or unsigned likewise. The products and the
requantization multiply are plain ``*``: Yosys maps them onto DSPs. A layer with thresholds instead of
requantization (BatchNorm and sign folded) outputs the bits ``acc + bias >= threshold``, one-bit lanes.

With ``codebook`` the weight memory holds, for each weight, its index into the layer's table of distinct
weights, and each product looks its weight up in a copy of that table (constant logic beside the
multiplier): a layer of k-means shared weights (``fxp compress --share-bits B``) of a qat run, exported
with its per-tensor power-of-two format, has at most ``2**B`` distinct values, so ``B`` bits a weight are
stored instead of the format's width. (Per-channel scales map the same centroids to other integers in
each channel: more distinct values, and fewer bits saved.)
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Const, Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.errors import FxpError
from fxp.format import Format
from hdl_gen.adders import accumulate, adder_trees, tree_cuts
from hdl_gen.memories import READ_LATENCY, align_to_read, check_capacity, pack, read_rom, rom
from hdl_gen.options import CODEBOOK, PIPELINE, WEIGHTS_IN, refused_quietly
from hdl_gen.pipeline import Slice, pipelined, register_slice
from hdl_gen.schedule import check_folding, fold_unit

MAX_BITS = 16  # the widest integer format the description allows for a layer's input, weights and output


def _lane_format(text, what: str) -> Format:
    fmt = Format.parse(text)
    if fmt.word_bits > MAX_BITS:
        raise FxpError(f"the {what} format {fmt} is wider than the {MAX_BITS} bits the MAC unit takes "
                       "(and the integer model description allows)")
    return fmt


def stored_weights(weights, weight_zero_point, fmt: Format, codebook: bool = False):
    """What the weight memory of a unit holds for the weights ``weights`` (``MH x MW`` integers of the format
    ``fmt``) less their per-output zero points (None: none): the words (the values ``w - wz``, or with
    ``codebook`` their indices into the table of distinct values), the bits of one word, the bits of one
    value, and the table (None where values are stored).

    A value takes the format's width when the format is signed and there are no zero points, else one bit
    more (the difference of two values of the format, signed: ``u8`` or ``s8`` less a zero point). An index
    takes ``ceil(log2(table size))`` bits, at least 1; a codebook is used only where that is fewer bits
    than the value's, since the table costs logic beside every product.
    """
    w = np.asarray(weights, dtype=np.int64)
    wz = np.zeros(w.shape[0], np.int64) if weight_zero_point is None else np.asarray(weight_zero_point, np.int64)
    values = w - wz[:, None]
    value_bits = fmt.word_bits + (0 if fmt.signed and not wz.any() else 1)
    if codebook:
        table = np.unique(values)
        index_bits = bits_for(len(table) - 1)
        if index_bits < value_bits:
            return np.searchsorted(table, values), index_bits, value_bits, table
    return values, value_bits, value_bits, None


class MacUnit(wiring.Component):
    """Folded integer dense layer with per-channel requantization.

    Parameters
    ----------
    weights: int array ``(MH, MW)`` within ``weight_format``.
    bias: ``MH`` int32 or None. multiplier, shift: ``MH`` ints (``0 < M < 2**31``, ``0 <= S <= 62``), or
        None where ``threshold`` (``MH`` ints) makes the outputs bits: ``acc + bias >= threshold``.
    in_format, weight_format, out_format: the layer's formats (``s8.0``, ``u8.0``, ``s12.5``, ...; only
        the word width and the signedness matter here), at most :data:`MAX_BITS` bits each.
    input_zero_point, weight_zero_point (``MH`` or None), output_zero_point, relu (requantized outputs).
    acc_bits: accumulator width (the description's, checked there to be wide enough).
    pe, simd: folding; ``MH % PE == 0``, ``MW % SIMD == 0``.
    weights_in: ``"logic"`` (constants in LUTs), ``"bram"`` (block RAM that Yosys infers, one more
        stage) or ``"dp16kd"`` (ECP5 block RAM through its output register, two more stages).
    pipeline: registers after the products (the DSPs' output registers), every ``tree_every``
        levels of the adder tree, and between the requantization steps (bias add, multiply,
        round-shift-clamp), for Fmax. Results are identical; only the latency grows.
    codebook: store indices into the layer's table of distinct weights (see :func:`stored_weights`).

    Members
    -------
    i: ``In(stream.Signature(ArrayLayout(IW bits, MW)))``; o: ``Out(stream.Signature(ArrayLayout(OW bits, PE)))``:
        lanes of the formats' widths and signedness (flat on the Verilog ports, lane 0 least significant);
        one unsigned bit per lane where the layer has thresholds.
    cycles_per_vector: ``NF x SF``.
    in_lane_width, in_lane_signed, out_lane_width, out_lane_signed: the lanes of ``i`` and ``o``
        (``IW``, ``OW``: the input and output formats' word widths).
    accumulator_bits: the width of each output's running sum (``acc_bits``).
    stored_bits: the bits of one weight in the weight memory (an index with ``codebook``, else a value).
    table: the distinct weights the indices select (None: the memory holds the values).
    latency: clock edges from the one that accepts an input to the one that raises its first output
        (no stalls): SF plus the pipeline stages.
    """

    kind = "mac"
    OPTIONS = (PIPELINE, WEIGHTS_IN, CODEBOOK)
    tree_every = 2

    @refused_quietly
    def __init__(self, weights, bias, multiplier, shift, *, in_format="s8.0", weight_format="s8.0",
                 input_zero_point=0, weight_zero_point=None, output_zero_point=0, relu=False, out_format="s8.0",
                 acc_bits=32, pe=1, simd=1, weights_in: str = "logic", pipeline: bool = False,
                 codebook: bool = False, threshold=None) -> None:
        w = np.asarray(weights, dtype=np.int64)
        if w.ndim != 2:
            raise FxpError(f"weights must be a matrix (MH, MW), got shape {w.shape}")
        self.mh, self.mw = w.shape
        check_folding(self.mh, self.mw, pe, simd)
        self.threshold = None if threshold is None else np.asarray(threshold, np.int64)
        if self.threshold is not None:  # bits out: requantization is not used
            if multiplier is not None or shift is not None:
                raise FxpError("a layer with thresholds outputs bits; give no multiplier and shift")
            multiplier, shift, out_format, output_zero_point = np.ones(self.mh, np.int64), np.zeros(self.mh, np.int64), "u1.0", 0
        self.in_fmt, self.w_fmt, self.out_fmt = (_lane_format(f, what) for f, what in (
            (in_format, "input"), (weight_format, "weight"), (out_format, "output")))
        wz = np.zeros(self.mh, np.int64) if weight_zero_point is None else np.asarray(weight_zero_point, np.int64)
        for name, values, fmt in (("weights", w, self.w_fmt), ("weight zero points", wz, self.w_fmt)):
            if values.size and (values.min() < fmt.raw_min or values.max() > fmt.raw_max):
                raise FxpError(f"{name} hold {values.min()}..{values.max()}, outside the weight format {fmt}")
        self.xz, self.oz, self.relu = int(input_zero_point), int(output_zero_point), bool(relu)
        for name, v, fmt in (("input zero point", self.xz, self.in_fmt), ("output zero point", self.oz, self.out_fmt)):
            if not fmt.raw_min <= v <= fmt.raw_max:
                raise FxpError(f"the {name} {v} is outside the format {fmt}")
        CODEBOOK.check(codebook)
        self.codebook = codebook
        self.words, self.stored_bits, self.w_bits, self.table = stored_weights(w, wz, self.w_fmt, codebook)
        self.bias = np.zeros(self.mh, np.int64) if bias is None else np.asarray(bias, np.int64)
        self.mult, self.shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
        self.in_lane_width, self.in_lane_signed = self.in_fmt.word_bits, self.in_fmt.signed
        self.out_lane_width, self.out_lane_signed = self.out_fmt.word_bits, self.out_fmt.signed
        self.acc_bits, self.pe, self.simd = acc_bits, pe, simd
        self.accumulator_bits = acc_bits
        self.weights_in, self.pipeline = weights_in, bool(pipeline)
        self.nf, self.sf = self.mh // pe, self.mw // simd
        WEIGHTS_IN.check(weights_in)
        PIPELINE.check(pipeline)
        check_capacity(weights_in, self.nf * self.sf)  # one weight word per issued slice
        if self.mult.min() < 1 or self.mult.max() >= 1 << 31 or self.shift.min() < 0 or self.shift.max() > 62:
            raise FxpError("multipliers must be in 1..2**31-1 and shifts in 0..62 (the description's ranges)")
        self.mult_bits = int(self.mult.max()).bit_length()
        # power-of-two requantization (dynamic fixed point): every multiplier 1, a shift and no multiply
        self.shift_only = bool((self.mult == 1).all())
        requantize_stages = 1 if self.threshold is not None else 3 - self.shift_only
        stages = READ_LATENCY[weights_in] + ((1 + tree_cuts(simd, self.tree_every) + requantize_stages)
                                           if self.pipeline else 0)
        self.latency = self.sf + stages
        self.cycles_per_vector = self.nf * self.sf
        in_lanes = data.ArrayLayout(Shape(self.in_lane_width, self.in_lane_signed), self.mw)
        out_lanes = data.ArrayLayout(Shape(self.out_lane_width, self.out_lane_signed), pe)
        super().__init__({"i": In(stream.Signature(in_lanes)), "o": Out(stream.Signature(out_lanes))})

    @staticmethod
    def estimate(mw: int, mh: int, pe: int, simd: int, weight_bits: int = 8, table_entries: int = 0) -> dict:
        """Rough cost of a unit of this shape, for folding tables: one DSP per product, about 30 LUT4 per
        lane for the accumulator and requantization (bench/bench_hw.py, docs/benchmarks.md); the input
        vector and each lane's accumulator in flip-flops; weights stored where folded. A codebook of
        ``table_entries`` values adds a lookup per product: about 8 value bits, each a function of the
        index, one LUT4 per 16 entries."""
        folded = (mh // pe) * (mw // simd) > 1
        lookup = pe * simd * 8 * -(-table_entries // 16)
        return {"lut4": 30 * pe + lookup, "ff": 8 * mw + 40 * pe, "dsp": pe * simd,
                "weight_bits": mw * mh * weight_bits if folded else 0}

    @staticmethod
    def weight_storage(op, codebook: bool = False, **_) -> tuple[int, int]:
        """The bits of one stored weight of ``op`` and the entries of its table (0: values stored), for
        folding (see :func:`stored_weights`); the unit's other options do not change them."""
        w = op.array("weights")
        _, bits, _, table = stored_weights(w.reshape(w.shape[0], -1), op.array("weight_zero_point"),
                                           op.weight_format, codebook)
        return bits, 0 if table is None else len(table)

    @staticmethod
    def random_layer(mw: int, mh: int, seed: int):
        """A random one-layer description this unit builds: an int8 dense layer with ReLU and gemmlowp
        requantization (31-bit multipliers, a shift that keeps the outputs in range)."""
        from fxp import fxpm

        rng = np.random.default_rng(seed)
        spec = {"format": "fxpm", "version": 1, "name": "unit",
                "input": {"shape": [mw], "quantizer": {"kind": "fixed", "format": "s8.0"}},
                "layers": [{"name": "layer", "op": "dense", "out_features": mh, "input_format": "s8.0",
                            "weight_format": "s8.0", "output_format": "s8.0", "acc_bits": 32, "relu": True,
                            "input_zero_point": 0, "output_zero_point": 0, "weights": "w", "bias": "b",
                            "multiplier": "m", "shift": "s"}]}
        arrays = {"w": rng.integers(-128, 128, (mh, mw)).astype(np.int8),
                  "b": rng.integers(-4096, 4096, mh).astype(np.int32),
                  "m": rng.integers(1 << 30, 1 << 31, mh).astype(np.int64),
                  "s": np.full(mh, 31 + max(0, int(np.ceil(np.log2(mw)))) + 6, np.int64)}
        return fxpm.Model(spec, arrays)

    @classmethod
    def from_op(cls, op, pe: int, simd: int, columns=None, **options) -> MacUnit:
        """The unit for an integer op of a description (``dense``; a ``conv2d`` one window at a time): its
        weights as a matrix ``[out, in]`` (a convolution's ``[out, c, u, v]`` flattened), the columns
        reordered by ``columns`` where given (unit column ``k`` is the op's column ``columns[k]``)."""
        w = op.array("weights").reshape(op.array("weights").shape[0], -1)
        if op.thresholded:
            outputs = {"threshold": op.array("threshold")}
        else:
            outputs = {"output_zero_point": op.output_zero_point, "relu": op.relu, "out_format": op.output_format}
        return cls(w if columns is None else w[:, columns], op.array("bias"), op.array("multiplier"), op.array("shift"),
                   in_format=op.input_format, weight_format=op.weight_format,
                   input_zero_point=op.input_zero_point, weight_zero_point=op.array("weight_zero_point"),
                   acc_bits=op.acc_bits, pe=pe, simd=simd, **outputs, **options)

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int, **options) -> MacUnit:
        """The unit for the ``dense`` layer ``name`` of ``model``."""
        op = model.op(name)
        if op.engine != cls.kind:
            raise FxpError(f"layer {name!r} is {op.op}, which the {cls.kind} unit does not build")
        return cls.from_op(op, pe, simd, **options)

    def elaborate(self, platform) -> Module:
        m = Module()
        pe, simd, acc_w = self.pe, self.simd, self.acc_bits
        iw, sb = self.in_lane_width, self.stored_bits
        issued, output = fold_unit(m, self)
        en = issued.en
        words = [pack([self.words[n * pe + p, s * simd + j] for p in range(pe) for j in range(simd)], sb)
                 for n in range(self.nf) for s in range(self.sf)]
        w = read_rom(m, "wrom", sb * pe * simd, words, issued.addr, en, self.weights_in)
        table = None
        if self.table is not None:  # padded to every index (the last value again): a full decode, no latch
            padded = self.table.tolist() + [int(self.table[-1])] * ((1 << sb) - len(self.table))
            table = Array(Const(v, signed(self.w_bits)) for v in padded)
        slice_, (x,) = align_to_read(m, en, issued.slice, [issued.x], self.weights_in)
        products = []
        for p in range(pe):
            for j in range(simd):
                lane = x[iw * j : iw * (j + 1)]
                xj = (lane.as_signed() if self.in_lane_signed else lane.as_unsigned()) - self.xz
                stored = w[sb * (p * simd + j) : sb * (p * simd + j + 1)]
                wj = stored.as_signed() if table is None else table[stored]
                products.append(xj * wj)
        if self.pipeline:  # the DSPs' output registers
            slice_, products = register_slice(m, en, "product", slice_, products)
        trees = [products[p * simd : (p + 1) * simd] for p in range(pe)]
        sums, slice_ = pipelined(m, en, slice_, self.pipeline, lambda cut: adder_trees(trees, cut, self.tree_every))
        totals = accumulate(m, en, slice_, sums, signed(acc_w))
        finish = self._threshold if self.threshold is not None else self._requantize
        results, valid = finish(m, en, totals, slice_.group, slice_.valid & slice_.last)
        for p, y in enumerate(results):
            m.d.comb += output.lanes[p].eq(y)
        m.d.comb += output.valid.eq(valid)
        return m

    def _threshold(self, m: Module, en: Value, totals: list, group: Value, valid: Value) -> tuple[list, Value]:
        """``acc >= threshold - bias`` per lane (one constant per output, read where the group is current):
        the output bits, and whether they are valid (a cycle later with the pipeline)."""
        pe = self.pe
        cuts = self.threshold - self.bias
        cw = max(int(c).bit_length() for c in cuts.tolist() + [0]) + 1  # signed, as wide as the widest cut
        words = [pack(cuts[n * pe : (n + 1) * pe], cw) for n in range(self.nf)]
        consts = rom(m, "crom", cw * pe, words, group)
        bits = [totals[p] >= consts[cw * p : cw * (p + 1)].as_signed() for p in range(pe)]
        if not self.pipeline:
            return bits, valid
        done, bits = register_slice(m, en, "compared", Slice(Const(0, 1), Const(1, 1), Const(1, 1), valid), bits)
        return bits, done.valid

    def _requantize(self, m: Module, en: Value, totals: list, group: Value, valid: Value) -> tuple[list, Value]:
        """(acc + bias) · M, add half, shift right by S, add the zero point, clamp: the output lanes, and
        whether they are valid (a cycle later per pipeline stage)."""
        pe, acc_w = self.pe, self.acc_bits
        # per output: bias (acc_bits), multiplier (as wide as the largest: a 31-bit multiplier needs
        # four 16x16 or 18x18 DSPs, a power-of-two scale none), shift (6 bits)
        mult_w = self.mult_bits
        cw = acc_w + mult_w + 6
        cwords = [pack([(int(self.bias[n * pe + p]) & ((1 << acc_w) - 1)) | (int(self.mult[n * pe + p]) << acc_w)
                        | (int(self.shift[n * pe + p]) << (acc_w + mult_w)) for p in range(pe)], cw)
                  for n in range(self.nf)]
        consts = rom(m, "crom", cw * pe, cwords, group)
        # the constants travel beside the data, so the ROM is read once, where the group is current
        scale = [consts[cw * p : cw * (p + 1)][acc_w:] for p in range(pe)]  # multiplier and shift of each lane
        sums = [totals[p] + consts[cw * p : cw * p + acc_w].as_signed() for p in range(pe)]
        done = Slice(Const(0, 1), Const(1, 1), Const(1, 1), valid)  # only valid travels with the results

        def stage(name: str, *groups: list) -> list[list]:  # one register stage for lists of lanes
            nonlocal done
            done, values = register_slice(m, en, name, done, [v for g in groups for v in g])
            return [values[k * pe : (k + 1) * pe] for k in range(len(groups))]

        if self.pipeline:
            sums, scale = stage("biased", sums, scale)
        if not self.shift_only:
            sums = [sums[p] * scale[p][:mult_w].as_unsigned() for p in range(pe)]
            if self.pipeline:
                sums, scale = stage("scaled", sums, scale)
        lo = self.oz if self.relu else self.out_fmt.raw_min
        hi = self.out_fmt.raw_max
        results = []
        uniform = len(set(self.shift.tolist())) == 1  # one shift for the layer: wires, not a barrel shifter
        for p in range(pe):
            rounded = Signal(signed(acc_w + 33), name=f"rounded{p}")
            if uniform:
                sh = int(self.shift[0])
                m.d.comb += rounded.eq((sums[p] + ((1 << sh) >> 1)) >> sh)
            else:
                sh = scale[p][mult_w : mult_w + 6]
                shift_minus_1 = Signal(6, name=f"shift_minus_1_{p}")
                m.d.comb += shift_minus_1.eq(sh - 1)  # unused (wraps) when the shift is 0
                half = Mux(sh.any(), Const(1, 1) << shift_minus_1, 0)
                m.d.comb += rounded.eq((sums[p] + half) >> sh)
            y = Signal(signed(acc_w + 34), name=f"y{p}")
            m.d.comb += y.eq(rounded + self.oz)
            results.append(Mux(y < lo, lo, Mux(y > hi, hi, y)))
        if self.pipeline:
            (results,) = stage("clamped", [y[: self.out_lane_width] for y in results])
        return results, done.valid
