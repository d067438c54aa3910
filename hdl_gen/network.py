"""A whole model as one streaming accelerator: raw pixels in, the class (and every score) out.

FINN's dataflow architecture, in Amaranth: one engine per compute layer (the op's engine: the
XNOR-popcount unit for ``binary_dense``, the MAC unit for ``dense``), each folded on its own, joined
by streams. The stages, in order:

- :class:`~hdl_gen.streams.Lookup`: every raw pixel (``0..levels``) through a table of the
  description's input quantizer, computed with the golden model's own arithmetic on the pixel values
  the datasets produce (:func:`fxp.datasets.normalize`), so the only floating-point step of the
  description is reproduced exactly;
- before every engine a :class:`~hdl_gen.streams.Gather` that collects the previous stage's transfers
  (pixels, or an engine's ``NF`` output transfers of ``PE`` lanes) into the whole vector the engine
  takes;
- the engines;
- :class:`~hdl_gen.streams.Argmax`: the index of the largest score of the last layer (the lowest
  index among equal scores, the golden model's rule) and every score.

An op that only reorders (``flatten``) is checked here, not built: the pixel stream is the (C, H, W) order.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.datasets import normalize
from fxp.errors import FxpError
from hdl_gen.engines import ENGINES, engine
from hdl_gen.folding import Folding
from hdl_gen.options import check_options
from hdl_gen.streams import Argmax, Gather, Lookup, class_layout, width


def compute_layers(model) -> list[tuple[str, str, int, int, int]]:
    """The layers an accelerator of ``model`` builds: (name, unit kind, MW, MH, bits per weight), or an
    error naming the first layer no engine builds and what does."""
    layers = []
    for op in model.ops:
        if op.reorders_only:
            if layers:
                raise FxpError(f"layer {op.name} ({op.op}) comes after a compute layer; a network's engines take "
                               "flat vectors in (C, H, W) order, so reorderings go before the first compute layer")
            continue
        if op.engine not in ENGINES:
            built = ", ".join(sorted({f"{name} ({cls.kind})" for cls in ENGINES.values() for name in _ops_of(cls)}))
            raise FxpError(f"layer {op.name} is {op.op}, which no engine builds yet; networks are made of {built} "
                           "layers (and flatten before them)")
        if len(op.in_shape) != 1:
            raise FxpError(f"layer {op.name} takes {list(op.in_shape)} input; add a flatten layer before it")
        wb = op.weight_format.word_bits + 1 if "weight_format" in type(op).fields else 1  # as the unit stores it
        layers.append((op.name, op.engine, op.in_shape[0], op.out_shape[0], wb))
    if not layers:
        raise FxpError("the model has no compute layer for an engine to build")
    return layers


def _ops_of(unit_class) -> list[str]:
    from fxp.ops import OPS

    return [name for name, cls in OPS.items() if cls.engine == unit_class.kind]


def input_table(model, levels: int) -> list[int]:
    """The input quantizer's output for every raw pixel value ``0..levels`` (bits as 0/1)."""
    pixels = normalize(np.arange(levels + 1), levels).astype(np.float64)
    return [int(v) for v in model.input.golden(pixels)]


class Network(wiring.Component):
    """The accelerator of ``model`` with ``folding`` (see the module docstring).

    Parameters
    ----------
    model: an integer model description (``fxp.fxpm.Model``) of flatten, dense and binary_dense layers.
    folding: PE and SIMD per layer and pixels per input transfer (:mod:`hdl_gen.folding`).
    levels: the largest raw pixel value (16 for digits, 255 for MNIST-format data).
    options: unit options (``pipeline``, ``weights_in``, ...), given to every engine that takes them.

    Members
    -------
    i: ``In(stream.Signature(ArrayLayout(unsigned(bits_for(levels)), pixels_per_word)))`` — raw pixels,
        ``pixels / pixels_per_word`` transfers per frame.
    o: ``Out(stream.Signature(class_layout(score, classes)))`` — one transfer per frame: ``index`` (the
        class) and ``scores`` (the last layer's outputs).
    units: the engines, in order. cycles_per_frame: the folding's predicted frame period.
    pixel_bits: the width of a raw pixel lane. classes: the number of scores.
    """

    def __init__(self, model, folding: Folding, levels: int, options: dict | None = None) -> None:
        layers = compute_layers(model)
        if [f.name for f in folding.layers] != [name for name, *_ in layers]:
            raise FxpError("the folding does not match the model's compute layers; fold this model")
        if not isinstance(levels, int) or levels < 1:
            raise FxpError(f"levels (the largest raw pixel value) must be a whole number >= 1, got {levels!r}")
        self.model, self.folding, self.levels = model, folding, levels
        options = dict(options or {})
        self.units = []
        for f in folding.layers:
            cls = engine(f.kind)
            own = check_options(cls, {k: v for k, v in options.items() if k in {o.name for o in cls.OPTIONS}}, ENGINES)
            self.units.append(cls.from_op(model.op(f.name), f.pe, f.simd, **own))
        self.table = input_table(model, levels)
        fmt = model.input.output.format  # None: bits
        self._quantized = unsigned(1) if fmt is None else (signed if fmt.signed else unsigned)(fmt.word_bits)
        last = self.units[-1]
        self._score = (signed if last.out_lane_signed else unsigned)(last.out_lane_width)
        self.classes = last.mh
        self.cycles_per_frame = folding.cycles_per_frame
        self.pixel_bits = bits_for(levels)
        pixel = unsigned(self.pixel_bits)
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(pixel, folding.pixels_per_word))),
                          "o": Out(stream.Signature(class_layout(self._score, self.classes)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        per_word = self.folding.pixels_per_word
        quantized = data.ArrayLayout(self._quantized, per_word)
        m.submodules.pixels = lookup = Lookup(self.i.signature.members["payload"].shape.elem_shape, self._quantized,
                                              per_word, self.table, quantized)
        wiring.connect(m, wiring.flipped(self.i), lookup.i)
        source = lookup.o
        for k, unit in enumerate(self.units):
            into = unit.i.signature.members["payload"].shape
            count = width(into) // width(source.signature.members["payload"].shape)
            m.submodules[f"gather{k}"] = gather = Gather(source.signature.members["payload"].shape, into, count)
            m.submodules[f"layer{k}"] = unit
            wiring.connect(m, source, gather.i)
            wiring.connect(m, gather.o, unit.i)
            source = unit.o
        last = self.units[-1]
        m.submodules.argmax = argmax = Argmax(source.signature.members["payload"].shape, self._score, last.pe, last.nf)
        wiring.connect(m, source, argmax.i)
        wiring.connect(m, argmax.o, wiring.flipped(self.o))
        return m
