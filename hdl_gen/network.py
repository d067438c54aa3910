"""A whole model as one streaming accelerator: raw pixels in, the class (and every score) out.

FINN's dataflow architecture, in Amaranth: one engine per compute layer (the unit its op names: the
XNOR-popcount unit for ``binary_dense``, the MAC unit for ``dense`` and, one window at a time, for
``conv2d``), each folded on its own, joined by streams (:mod:`hdl_gen.streams`):

- :class:`~hdl_gen.streams.Lookup`: every raw pixel (``0..levels``) through a table of the
  description's input quantizer, computed with the golden model's own arithmetic on the pixel values
  the datasets produce (:func:`fxp.datasets.normalize`), so the only floating-point step of the
  description is reproduced exactly;
- feature maps travel as pixels in raster order, a pixel's channels side by side (H, W, C): an op that
  reads windows (``conv2d``, ``maxpool2d``) gets them from a :class:`~hdl_gen.streams.Padder` (where
  it pads: the input zero point, whose real value is 0) and a
  :class:`~hdl_gen.streams.SlidingWindow`; a convolution's engine then computes one window at a time
  (its weights reordered to the window's (row, column, channel) order), max-pooling is a
  :class:`~hdl_gen.streams.WindowMax`;
- before every engine that takes a whole vector, a :class:`~hdl_gen.streams.Gather` collects the
  previous stage's transfers; ``flatten`` is no hardware: the stream is (H, W, C) where the
  description flattens (C, H, W), so the next layer's weight columns are reordered to match;
- a :class:`~hdl_gen.streams.Gather` of the last engine's scores and :class:`~hdl_gen.streams.Argmax`:
  the index of the largest score (the lowest index among equal scores, the golden model's rule) and
  every score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Module, Shape, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from fxp.datasets import normalize
from fxp.errors import FxpError
from hdl_gen.engines import ENGINES, engine
from hdl_gen.folding import Folding, Layer
from hdl_gen.options import check_options
from hdl_gen.streams import Argmax, Fifo, Gather, Lookup, Padder, SlidingWindow, WindowMax, class_layout, width


@dataclass(frozen=True)
class Stage:
    """One stage of the stream: an op, and for a windowed op the frame it reads (padded) and its window."""

    op: object
    channels: int = 0  # a windowed op's input pixel lanes
    rows: int = 0  # its padded frame
    cols: int = 0
    columns: np.ndarray | None = None  # an engine's weight columns in the stream's order
    pixels_in: int = 0  # a windowed op's input pixels per frame (unpadded)


def _order_hwc(channels: int, rows: int, cols: int) -> np.ndarray:
    """Column ``k`` of a vector gathered from an (H, W, C) stream is column ``order[k]`` of the (C, H, W) one."""
    h, w, c = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(channels), indexing="ij")
    return (c * rows * cols + h * cols + w).reshape(-1)


def _window_order(channels: int, kernel: int) -> np.ndarray:
    """Column ``k`` of a window in (row, column, channel) order is column ``order[k]`` of ``[c, u, v]``."""
    u, v, c = np.meshgrid(np.arange(kernel), np.arange(kernel), np.arange(channels), indexing="ij")
    return (c * kernel * kernel + u * kernel + v).reshape(-1)


def plan(model, options: dict | None = None) -> tuple[list[Stage], list[Layer], list[tuple[str, int]]]:
    """The stages of an accelerator of ``model``, its compute layers for folding (their weights stored as
    the engines store them with the unit ``options``), and the fixed-rate stages (sliding windows: one
    padded pixel a cycle) with their cycles per frame; or an error naming the first layer that cannot be
    built and what can."""
    shape = tuple(model.spec["input"]["shape"])
    stages, layers, fixed = [], [], []
    reorder = None  # pending: the (C, H, W) a flatten turned into the (H, W, C) stream
    for op in model.ops:
        if op.reorders_only:
            if len(shape) == 3:
                reorder = _order_hwc(*shape)
            shape = op.out_shape
            continue
        if op.window is not None:
            kernel, stride, pad = op.window
            if len(shape) != 3:
                raise FxpError(f"layer {op.name} ({op.op}) reads windows of a [C, H, W] map, got {list(shape)}")
            c, h, w = shape
            if op.engine is None and op.window_reduce is None or op.engine is not None and op.engine not in ENGINES:
                raise FxpError(f"layer {op.name} is {op.op}, which no engine builds yet; {_what_builds()}")
            stages.append(Stage(op, c, h + 2 * pad, w + 2 * pad,
                                _window_order(c, kernel) if op.engine is not None else None, h * w))
            fixed.append((f"{op.name} window", (h + 2 * pad) * (w + 2 * pad)))
            if op.engine is not None:
                layers.append(_layer(op, kernel * kernel * c, options, op.out_shape[1] * op.out_shape[2]))
            shape = op.out_shape
            continue
        if op.engine not in ENGINES:
            raise FxpError(f"layer {op.name} is {op.op}, which no engine builds yet; {_what_builds()}")
        if len(shape) != 1:
            raise FxpError(f"layer {op.name} takes {list(shape)} input; add a flatten layer before it")
        stages.append(Stage(op, columns=reorder))
        layers.append(_layer(op, shape[0], options))
        reorder, shape = None, op.out_shape
    if not layers:
        raise FxpError("the model has no compute layer for an engine to build")
    if stages[-1].op.engine is None or stages[-1].op.window is not None:
        raise FxpError(f"the last layer, {stages[-1].op.name}, must give the scores: a dense or binary_dense layer")
    return stages, layers, fixed


def compute_layers(model, options: dict | None = None) -> list[Layer]:
    """The compute layers of ``model`` as folding sees them (see :func:`plan`)."""
    return plan(model, options)[1]


def _layer(op, fan_in: int, options: dict | None, windows: int = 1) -> Layer:
    """``op`` as folding sees it, its weights stored as its engine stores them with ``options``."""
    bits, table = engine(op.engine).weight_storage(op, **(options or {}))
    return Layer(op.name, op.engine, fan_in, op.out_shape[0], bits, windows, table)


def _what_builds() -> str:
    from fxp.ops import OPS

    built = sorted(f"{name} ({cls.engine})" for name, cls in OPS.items() if cls.engine in ENGINES)
    pooled = sorted(name for name, cls in OPS.items() if cls.window_reduce is not None)
    return f"networks are made of {', '.join(built)} and {', '.join(pooled)} layers (and flatten)"


def input_table(model, levels: int) -> list[int]:
    """The input quantizer's output for every raw pixel value ``0..levels`` (bits as 0/1)."""
    pixels = normalize(np.arange(levels + 1), levels).astype(np.float64)
    return [int(v) for v in model.input.golden(pixels)]


def lane_shape(fmt) -> Shape:
    """The Amaranth shape of one value of an activation format (None: a bit)."""
    return unsigned(1) if fmt is None else Shape(fmt.word_bits, fmt.signed)


class Network(wiring.Component):
    """The accelerator of ``model`` with ``folding`` (see the module docstring).

    Parameters
    ----------
    model: an integer model description (``fxp.fxpm.Model``) of the layers :func:`plan` takes.
    folding: PE and SIMD per compute layer and pixels per input transfer (:mod:`hdl_gen.folding`).
    levels: the largest raw pixel value (16 for digits, 255 for MNIST-format data).
    options: unit options (``pipeline``, ``weights_in``, ...), given to every engine that takes them.

    Members
    -------
    i: ``In(stream.Signature(ArrayLayout(unsigned(bits_for(levels)), pixels_per_word)))`` — raw pixels,
        ``pixels / pixels_per_word`` transfers per frame, in (C, H, W) order.
    o: ``Out(stream.Signature(class_layout(score, classes)))`` — one transfer per frame: ``index`` (the
        class) and ``scores`` (the last layer's outputs).
    units: the engines, in order. cycles_per_frame: the folding's predicted frame period.
    pixel_bits: the width of a raw pixel lane. classes: the number of scores.
    """

    def __init__(self, model, folding: Folding, levels: int, options: dict | None = None) -> None:
        self.stages, layers, _ = plan(model, options)
        if [f.name for f in folding.layers] != [layer.name for layer in layers]:
            raise FxpError("the folding does not match the model's compute layers; fold this model")
        if not isinstance(levels, int) or levels < 1:
            raise FxpError(f"levels (the largest raw pixel value) must be a whole number >= 1, got {levels!r}")
        first = self.stages[0]
        if first.op.window is not None and folding.pixels_per_word != first.channels:
            raise FxpError(f"the first layer reads windows: an input transfer is one pixel of {first.channels} "
                           f"channel(s), not {folding.pixels_per_word} values; fold with pixels_per_word "
                           f"{first.channels}")
        self.model, self.folding, self.levels = model, folding, levels
        options = dict(options or {})
        folds = {f.name: f for f in folding.layers}
        self.units = {}
        for stage in self.stages:
            if stage.op.engine is None:
                continue
            cls, f = engine(stage.op.engine), folds[stage.op.name]
            own = check_options(cls, {k: v for k, v in options.items() if k in {o.name for o in cls.OPTIONS}}, ENGINES)
            self.units[stage.op.name] = cls.from_op(stage.op, f.pe, f.simd, columns=stage.columns, **own)
        self.table = input_table(model, levels)
        self._quantized = lane_shape(model.input.output.format)
        last = list(self.units.values())[-1]
        self._score = Shape(last.out_lane_width, last.out_lane_signed)
        self.classes = last.mh
        self.cycles_per_frame = folding.cycles_per_frame
        self.pixel_bits = bits_for(levels)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(self.pixel_bits), folding.pixels_per_word))),
            "o": Out(stream.Signature(class_layout(self._score, self.classes)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        per_word, lane = self.folding.pixels_per_word, self._quantized
        m.submodules.pixels = lookup = Lookup(unsigned(self.pixel_bits), lane, per_word, self.table,
                                              data.ArrayLayout(lane, per_word))
        wiring.connect(m, wiring.flipped(self.i), lookup.i)
        source = lookup.o

        def shape_of(iface):
            return iface.signature.members["payload"].shape

        def gathered(name: str, into):  # ``source`` collected into transfers of shape ``into``
            if shape_of(source) == into:
                return source
            m.submodules[name] = gather = Gather(shape_of(source), into, width(into) // width(shape_of(source)))
            wiring.connect(m, source, gather.i)
            return gather.o

        for k, stage in enumerate(self.stages):
            op = stage.op
            if op.window is not None:
                kernel, stride, pad = op.window
                lane = lane_shape(op.incoming.format)
                pixel = data.ArrayLayout(lane, stage.channels)
                source = gathered(f"pixel{k}", pixel)
                if k:  # a frame of the map ahead: the window takes pixels in bursts, the stage before evenly
                    m.submodules[f"fifo{k}"] = fifo = Fifo(pixel, stage.pixels_in)
                    wiring.connect(m, source, fifo.i)
                    source = fifo.o
                if pad:
                    xz = op.input_zero_point
                    value = sum((xz & ((1 << lane.width) - 1)) << (c * lane.width) for c in range(stage.channels))
                    m.submodules[f"pad{k}"] = padder = Padder(pixel, stage.rows - 2 * pad, stage.cols - 2 * pad,
                                                              pad, value)
                    wiring.connect(m, source, padder.i)
                    source = padder.o
                unit = self.units.get(op.name)
                window = (shape_of(unit.i) if unit is not None
                          else data.ArrayLayout(lane, kernel * kernel * stage.channels))
                m.submodules[f"window{k}"] = windows = SlidingWindow(pixel, window, stage.rows, stage.cols, kernel,
                                                                     stride)
                wiring.connect(m, source, windows.i)
                if unit is None:  # max-pooling
                    m.submodules[f"pool{k}"] = pool = WindowMax(window, pixel, lane, kernel * kernel)
                    wiring.connect(m, windows.o, pool.i)
                    source = pool.o
                    continue
                m.submodules[f"layer{k}"] = unit
                wiring.connect(m, windows.o, unit.i)
                source = unit.o
                continue
            unit = self.units[op.name]
            into = shape_of(unit.i)
            source = gathered(f"gather{k}", into)
            m.submodules[f"layer{k}"] = unit
            wiring.connect(m, source, unit.i)
            source = unit.o
        m.submodules.argmax = argmax = Argmax(self._score, self.classes)
        source = gathered("scores", shape_of(argmax.i))
        wiring.connect(m, source, argmax.i)
        wiring.connect(m, argmax.o, wiring.flipped(self.o))
        return m
