"""Integer multiply-accumulate matrix-vector unit for ``dense`` layers, in Amaranth.

The arithmetic of the integer model description, exactly: ``acc = Σ (x − xz)(w − wz) + bias``,
then per output ``(acc · M + 2**(S−1)) >> S`` (ties toward +∞; ``>>`` floors), plus the output zero
point, saturated to the output format (ReLU folded into the lower bound). Every format the
description allows for an integer layer is taken as it is: inputs, weights and outputs of 1 to 16
bits, signed or unsigned. One input transfer carries a whole vector of ``MW`` lanes of the input
format's width (lane ``k`` at bits ``k·IW ..``, read as signed or unsigned as the format says);
``PE`` outputs are computed in parallel from ``SIMD`` products per cycle; each output transfer
carries ``PE`` lanes of the output format's width, signed or unsigned likewise. The products and the
requantization multiply are plain ``*``: Yosys maps them onto DSPs.
"""

from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from fxp.errors import FxpError
from fxp.format import Format
from hdl_gen.fold import (WEIGHTS_IN, accumulate, adder_trees, carry, check_folding, check_weights_in, deliver,
                          fetch_weights, folded_issue, pack, pipelined, refused_quietly, rom, stage,
                          tree_cuts)


MAX_BITS = 16  # the widest integer format the description allows for a layer's input, weights and output


def _lane_format(text, what: str) -> Format:
    fmt = Format.parse(text)
    if fmt.word_bits > MAX_BITS:
        raise FxpError(f"the {what} format {fmt} is wider than the {MAX_BITS} bits the MAC unit takes "
                       "(and the integer model description allows)")
    return fmt


class MacUnit(wiring.Component):
    """Folded integer dense layer with per-channel requantization.

    Parameters
    ----------
    weights: int array ``(MH, MW)`` within ``weight_format``.
    bias: ``MH`` int32 or None. multiplier, shift: ``MH`` ints (``0 < M < 2**31``, ``0 <= S <= 62``).
    in_format, weight_format, out_format: the layer's formats (``s8.0``, ``u8.0``, ``s12.5``, ...; only
        the word width and the signedness matter here), at most :data:`MAX_BITS` bits each.
    input_zero_point, weight_zero_point (``MH`` or None), output_zero_point, relu.
    acc_bits: accumulator width (the description's, checked there to be wide enough).
    pe, simd: folding; ``MH % PE == 0``, ``MW % SIMD == 0``.
    weights_in: ``"logic"`` (constants in LUTs), ``"bram"`` (block RAM that Yosys infers, one more
        stage) or ``"dp16kd"`` (ECP5 block RAM through its output register, two more stages).
    pipeline: registers after the products (the DSPs' output registers), every ``tree_every``
        levels of the adder tree, and between the requantization steps (bias add, multiply,
        round-shift-clamp), for Fmax. Results are identical; only the latency grows.

    Members
    -------
    i: ``In(stream.Signature(IW * MW))``; o: ``Out(stream.Signature(OW * PE))``.
    in_lane_width, in_lane_signed, out_lane_width, out_lane_signed: the lanes of ``i`` and ``o``
        (``IW``, ``OW``: the input and output formats' word widths).
    accumulator_bits: the width of each output's running sum (``acc_bits``).
    latency: clock edges from the one that accepts an input to the one that raises its first output
        (no stalls): SF plus the pipeline stages.
    """

    tree_every = 2

    @refused_quietly
    def __init__(self, weights, bias, multiplier, shift, *, in_format="s8.0", weight_format="s8.0",
                 input_zero_point=0, weight_zero_point=None, output_zero_point=0, relu=False, out_format="s8.0",
                 acc_bits=32, pe=1, simd=1, weights_in: str = "logic", pipeline: bool = False) -> None:
        w = np.asarray(weights, dtype=np.int64)
        if w.ndim != 2:
            raise FxpError(f"weights must be a matrix (MH, MW), got shape {w.shape}")
        self.mh, self.mw = w.shape
        check_folding(self.mh, self.mw, pe, simd)
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
        self.wadj = w - wz[:, None]  # (w - wz) of two values of the weight format: one bit wider, signed
        self.w_bits = self.w_fmt.word_bits + 1
        self.bias = np.zeros(self.mh, np.int64) if bias is None else np.asarray(bias, np.int64)
        self.mult, self.shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
        self.in_lane_width, self.in_lane_signed = self.in_fmt.word_bits, self.in_fmt.signed
        self.out_lane_width, self.out_lane_signed = self.out_fmt.word_bits, self.out_fmt.signed
        self.acc_bits, self.pe, self.simd = acc_bits, pe, simd
        self.accumulator_bits = acc_bits
        self.weights_in, self.pipeline = weights_in, bool(pipeline)
        self.nf, self.sf = self.mh // pe, self.mw // simd
        check_weights_in(weights_in, self.nf * self.sf)  # one weight word per issued slice
        if self.mult.min() < 1 or self.mult.max() >= 1 << 31 or self.shift.min() < 0 or self.shift.max() > 62:
            raise FxpError("multipliers must be in 1..2**31-1 and shifts in 0..62 (the description's ranges)")
        self.mult_bits = int(self.mult.max()).bit_length()
        # power-of-two requantization (dynamic fixed point): every multiplier 1, a shift and no multiply
        self.shift_only = bool((self.mult == 1).all())
        stages = WEIGHTS_IN[weights_in] + ((1 + tree_cuts(simd, self.tree_every) + 3 - self.shift_only)
                                           if self.pipeline else 0)
        self.latency = self.sf + stages
        super().__init__({"i": In(stream.Signature(unsigned(self.in_lane_width * self.mw))),
                          "o": Out(stream.Signature(unsigned(self.out_lane_width * pe)))})

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int, **options) -> MacUnit:
        """The unit for the ``dense`` layer ``name`` of an integer model description."""
        layer = next((x for x in model.layers if x["name"] == name), None)
        if layer is None or layer["op"] != "dense":
            raise FxpError(f"{name!r} is not a dense layer of this model")
        return cls(model.array(layer, "weights"), model.array(layer, "bias"), model.array(layer, "multiplier"),
                   model.array(layer, "shift"), in_format=layer["input_format"],
                   weight_format=layer["weight_format"], input_zero_point=layer["input_zero_point"],
                   weight_zero_point=model.array(layer, "weight_zero_point"),
                   output_zero_point=layer["output_zero_point"], relu=layer["relu"],
                   out_format=layer["output_format"], acc_bits=layer["acc_bits"], pe=pe, simd=simd, **options)

    def elaborate(self, platform) -> Module:
        m = Module()
        pe, simd, acc_w = self.pe, self.simd, self.acc_bits
        iw, wb = self.in_lane_width, self.w_bits
        iss = folded_issue(m, self, iw)
        en = iss.en
        wwords = [pack([self.wadj[n * pe + p, s * simd + j] for p in range(pe) for j in range(simd)], wb)
                  for n in range(self.nf) for s in range(self.sf)]
        w, s = fetch_weights(m, iss, wb * pe * simd, wwords, self.weights_in)
        prods = []
        for p in range(pe):
            for j in range(simd):
                lane = s["x"][iw * j : iw * (j + 1)]
                xj = (lane.as_signed() if self.in_lane_signed else lane.as_unsigned()) - self.xz
                wj = w[wb * (p * simd + j) : wb * (p * simd + j + 1)].as_signed()
                prods.append(xj * wj)
        if self.pipeline:  # the DSPs' output registers
            s, prods = carry(m, en, "prod", s, prods)
        trees = [prods[p * simd : (p + 1) * simd] for p in range(pe)]
        sums, s = pipelined(m, en, s, self.pipeline, lambda cut: adder_trees(trees, cut, self.tree_every))
        totals = accumulate(m, en, s, sums, signed(acc_w))
        self._requantize(m, en, totals, {"nf": s["nf"], "valid": s["valid"] & s["last"]})
        return m

    def _requantize(self, m: Module, en, totals: list, out: dict) -> None:
        """(acc + bias) · M, add half, shift right by S, add the zero point, clamp; into ``o``."""
        pe, acc_w = self.pe, self.acc_bits
        # per output: bias (acc_bits), multiplier (as wide as the largest: a 31-bit multiplier needs
        # four 16x16 or 18x18 DSPs, a power-of-two scale none), shift (6 bits)
        mw_ = self.mult_bits
        cw = acc_w + mw_ + 6
        cwords = [pack([(int(self.bias[n * pe + p]) & ((1 << acc_w) - 1)) | (int(self.mult[n * pe + p]) << acc_w)
                         | (int(self.shift[n * pe + p]) << (acc_w + mw_)) for p in range(pe)], cw) for n in range(self.nf)]
        consts = rom(m, "crom", cw * pe, cwords, out["nf"])
        # the constants travel beside the data, so the ROM is read once, where nf is current
        c = [consts[cw * p : cw * (p + 1)] for p in range(pe)]
        v = {**out, **{f"s{p}": totals[p] + c[p][:acc_w].as_signed() for p in range(pe)},
             **{f"c{p}": c[p][acc_w:] for p in range(pe)}}
        if self.pipeline:
            v = stage(m, en, "biased", v)
        if not self.shift_only:
            v = {**v, **{f"s{p}": v[f"s{p}"] * v[f"c{p}"][:mw_].as_unsigned() for p in range(pe)}}
            if self.pipeline:
                v = stage(m, en, "scaled", v)
        lo = self.oz if self.relu else self.out_fmt.raw_min
        hi = self.out_fmt.raw_max
        ys = []
        uniform = len(set(self.shift.tolist())) == 1  # one shift for the layer: wires, not a barrel shifter
        for p in range(pe):
            prod = v[f"s{p}"]
            rounded = Signal(signed(acc_w + 33), name=f"rounded{p}")
            if uniform:
                sh = int(self.shift[0])
                m.d.comb += rounded.eq((prod + ((1 << sh) >> 1)) >> sh)
            else:
                sh = v[f"c{p}"][mw_ : mw_ + 6]
                shm1 = Signal(6, name=f"shm1_{p}")
                m.d.comb += shm1.eq(sh - 1)  # unused (wraps) when the shift is 0
                half = Mux(sh.any(), Const(1, 1) << shm1, 0)
                m.d.comb += rounded.eq((prod + half) >> sh)
            y = Signal(signed(acc_w + 34), name=f"y{p}")
            m.d.comb += y.eq(rounded + self.oz)
            ys.append(Mux(y < lo, lo, Mux(y > hi, hi, y)))
        if self.pipeline:
            ow = self.out_lane_width
            v = stage(m, en, "clamped", {"valid": v["valid"], **{f"y{p}": y[:ow] for p, y in enumerate(ys)}})
            ys = [v[f"y{p}"] for p in range(pe)]
        deliver(m, self, en, v["valid"], ys, self.out_lane_width, skid=self.pipeline)
