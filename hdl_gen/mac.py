"""int8 multiply-accumulate matrix-vector unit for ``dense`` layers, in Amaranth.

The arithmetic of the integer model description, exactly: ``acc = Σ (x − xz)(w − wz) + bias``,
then per output ``(acc · M + 2**(S−1)) >> S`` (ties toward +∞), plus the output zero point,
saturated to the output format (ReLU folded into the lower bound). One input transfer carries a whole
vector of ``MW`` signed 8-bit lanes (lane ``k`` at bits ``8k..8k+7``); ``PE`` outputs are computed
in parallel from ``SIMD`` products per cycle; each output transfer carries ``PE`` signed 8-bit lanes.
The products and the requantization multiply are plain ``*``: Yosys maps them onto DSPs.
"""

from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fxp.errors import FxpError
from fxp.format import Format
from hdl_gen.fold import adder_tree, folded_schedule


def _pack(values, width: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    return word


class MacUnit(wiring.Component):
    """Folded int8 dense layer with per-channel requantization.

    Parameters
    ----------
    weights: int array ``(MH, MW)`` within the weight format (8-bit).
    bias: ``MH`` int32 or None. multiplier, shift: ``MH`` ints (``0 < M < 2**31``, ``0 <= S <= 62``).
    input_zero_point, weight_zero_point (``MH`` or None), output_zero_point, relu, out_format.
    acc_bits: accumulator width (the description's, checked there to be wide enough).
    pe, simd: folding; ``MH % PE == 0``, ``MW % SIMD == 0``.

    Members
    -------
    i: ``In(stream.Signature(8 * MW))``; o: ``Out(stream.Signature(8 * PE))``.
    """

    def __init__(self, weights, bias, multiplier, shift, *, input_zero_point=0, weight_zero_point=None,
                 output_zero_point=0, relu=False, out_format="s8.0", acc_bits=32, pe=1, simd=1) -> None:
        w = np.asarray(weights, dtype=np.int64)
        self.mh, self.mw = w.shape
        if self.mh % pe:
            raise FxpError(f"MH={self.mh} is not a multiple of PE={pe}; choose PE among the divisors of MH")
        if self.mw % simd:
            raise FxpError(f"MW={self.mw} is not a multiple of SIMD={simd}; choose SIMD among the divisors of MW")
        wz = np.zeros(self.mh, np.int64) if weight_zero_point is None else np.asarray(weight_zero_point, np.int64)
        self.wadj = w - wz[:, None]  # (w - wz) fits 9 bits signed
        self.bias = np.zeros(self.mh, np.int64) if bias is None else np.asarray(bias, np.int64)
        self.mult, self.shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
        self.xz, self.oz, self.relu = int(input_zero_point), int(output_zero_point), bool(relu)
        self.out_fmt = Format.parse(out_format)
        self.acc_bits, self.pe, self.simd = acc_bits, pe, simd
        self.nf, self.sf = self.mh // pe, self.mw // simd
        super().__init__({"i": In(stream.Signature(unsigned(8 * self.mw))),
                          "o": Out(stream.Signature(unsigned(8 * pe)))})

    @classmethod
    def from_layer(cls, model, name: str, pe: int, simd: int) -> MacUnit:
        """The unit for the ``dense`` layer ``name`` of an integer model description."""
        layer = next((x for x in model.layers if x["name"] == name), None)
        if layer is None or layer["op"] != "dense":
            raise FxpError(f"{name!r} is not a dense layer of this model")
        if Format.parse(layer["input_format"]).word_bits > 8 or Format.parse(layer["weight_format"]).word_bits > 8:
            raise FxpError(f"layer {name}: the MAC unit takes 8-bit inputs and weights")
        return cls(model.array(layer, "weights"), model.array(layer, "bias"), model.array(layer, "multiplier"),
                   model.array(layer, "shift"), input_zero_point=layer["input_zero_point"],
                   weight_zero_point=model.array(layer, "weight_zero_point"),
                   output_zero_point=layer["output_zero_point"], relu=layer["relu"],
                   out_format=layer["output_format"], acc_bits=layer["acc_bits"], pe=pe, simd=simd)

    def elaborate(self, platform) -> Module:
        m = Module()
        pe, simd, acc_w = self.pe, self.simd, self.acc_bits
        wwords = [_pack([self.wadj[n * pe + p, s * simd + j] for p in range(pe) for j in range(simd)], 9)
                  for n in range(self.nf) for s in range(self.sf)]
        m.submodules.wrom = wrom = Memory(shape=unsigned(9 * pe * simd), depth=self.nf * self.sf, init=wwords)
        wport = wrom.read_port(domain="comb")
        # per output: bias (acc_bits), multiplier (31 bits), shift (6 bits)
        cw = acc_w + 31 + 6
        cwords = [_pack([(int(self.bias[n * pe + p]) & ((1 << acc_w) - 1)) | (int(self.mult[n * pe + p]) << acc_w)
                         | (int(self.shift[n * pe + p]) << (acc_w + 31)) for p in range(pe)], cw) for n in range(self.nf)]
        m.submodules.crom = crom = Memory(shape=unsigned(cw * pe), depth=self.nf, init=cwords)
        cport = crom.read_port(domain="comb")

        accs = [Signal(signed(acc_w), name=f"acc{p}") for p in range(pe)]
        lo = self.oz if self.relu else self.out_fmt.raw_min
        hi = self.out_fmt.raw_max

        def datapath(x, last, nf):
            for p in range(pe):
                prods = []
                for j in range(simd):
                    xj = x[8 * j : 8 * j + 8].as_signed() - self.xz
                    wj = wport.data[9 * (p * simd + j) : 9 * (p * simd + j) + 9].as_signed()
                    prods.append(xj * wj)
                total = Signal(signed(acc_w), name=f"total{p}")
                m.d.comb += total.eq(accs[p] + adder_tree(prods))
                with m.If(last):
                    c = cport.data[cw * p : cw * (p + 1)]
                    bias, mult, sh = c[:acc_w].as_signed(), c[acc_w : acc_w + 31], c[acc_w + 31 : acc_w + 37]
                    prod = Signal(signed(acc_w + 33), name=f"scaled{p}")
                    m.d.comb += prod.eq((total + bias) * mult.as_unsigned())
                    shm1 = Signal(6, name=f"shm1_{p}")
                    m.d.comb += shm1.eq(sh - 1)  # unused (wraps) when the shift is 0
                    half = Mux(sh.any(), Const(1, 1) << shm1, 0)
                    rounded = Signal(signed(acc_w + 33), name=f"rounded{p}")
                    m.d.comb += rounded.eq((prod + half) >> sh)
                    y = Signal(signed(acc_w + 34), name=f"y{p}")
                    m.d.comb += y.eq(rounded + self.oz)
                    clamped = Mux(y < lo, lo, Mux(y > hi, hi, y))
                    m.d.sync += [self.o.payload[8 * p : 8 * p + 8].eq(clamped), accs[p].eq(0)]
                with m.Else():
                    m.d.sync += accs[p].eq(total)

        nf, sf = folded_schedule(m, self, 8, accs, datapath)
        m.d.comb += [wport.addr.eq(nf * self.sf + sf), cport.addr.eq(nf)]
        return m
