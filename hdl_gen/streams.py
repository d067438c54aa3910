"""Streaming stages that join the engines into a network: widen a stream, look values up, pick the class.

Each is a component with a stream in and a stream out, and no stage's ``ready`` depends on its
consumer's ``ready`` in the same cycle except :class:`Lookup` (a combinational map, nothing held),
so that chaining them adds no combinational path through the network.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for


def width(shape) -> int:
    """The bits of a payload shape (a plain shape or a data layout)."""
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


class Gather(wiring.Component):
    """Collects ``count`` transfers into one: transfer ``n`` fills bits ``[n·w, (n+1)·w)`` of the wide word.

    An engine sends an output vector as ``NF`` transfers of ``PE`` lanes; the next engine takes the
    whole vector in one transfer. The last piece and the pieces before it go into a collector; a
    complete vector moves into the output register as soon as that is free, so the next vector can be
    collected while this one waits. ``i.ready`` comes from a register.

    Parameters
    ----------
    in_shape, out_shape: the payload shapes (``width(out_shape) == count * width(in_shape)``).

    Members
    -------
    i: ``In(stream.Signature(in_shape))``; o: ``Out(stream.Signature(out_shape))``.
    """

    def __init__(self, in_shape, out_shape, count: int) -> None:
        if width(out_shape) != count * width(in_shape):
            raise ValueError(f"Gather: {count} transfers of {width(in_shape)} bits do not make {width(out_shape)}")
        self.count = count
        super().__init__({"i": In(stream.Signature(in_shape)), "o": Out(stream.Signature(out_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        w, n = width(self.i.signature.members["payload"].shape), self.count
        piece = Value.cast(self.i.payload)
        collected = Signal(w * n, name="collected", reset_less=True)
        held = Signal(name="collector_full")  # a whole vector waits for the output register
        index = Signal(range(max(n, 2)), name="piece")
        # a shift register: each piece enters at the top and moves down, so after n pieces piece k sits in
        # slot k, with no decoder per slot
        complete = Signal(w * n)  # the collector shifted, this cycle's piece on top
        m.d.comb += complete.eq(Cat(collected[w:], piece) if n > 1 else piece)
        out_free = ~self.o.valid | self.o.ready
        last = self.i.valid & self.i.ready & (index == n - 1)
        vector = Signal(w * n, name="vector", reset_less=True)  # data needs no reset, only valid does
        m.d.comb += [self.i.ready.eq(~held), Value.cast(self.o.payload).eq(vector)]
        # one enable and one two-way choice per bit: one LUT4 a bit. Written as two conditional
        # assignments, Yosys folds the enable into the data logic instead (two LUT4 a bit: the SFC's
        # 784-bit gather on ECP5 took 1,585 LUT4, 785 this way), and i.ready stays a register
        with m.If(out_free & (held | last)):
            m.d.sync += [vector.eq(Mux(held, collected, complete)), self.o.valid.eq(1)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(held & out_free):
            m.d.sync += held.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += collected.eq(complete)
            with m.If(index == n - 1):
                m.d.sync += index.eq(0)
                with m.If(~out_free):
                    m.d.sync += held.eq(1)
            with m.Else():
                m.d.sync += index.eq(index + 1)
        return m


class Lookup(wiring.Component):
    """Maps every lane through a constant table: ``o`` lane ``k`` is ``table[i lane k]``, in the same cycle.

    The accelerator's input quantizer: one entry per raw pixel value, computed with the golden model's
    own arithmetic, so the description's only floating-point step is reproduced exactly.

    Parameters
    ----------
    in_lane, out_lane: lane shapes; lanes: lanes per transfer; table: one value per input value.
    out_shape: the payload shape of ``o`` (``lanes`` lanes of ``out_lane``; bits as ``unsigned(lanes)``).
    """

    def __init__(self, in_lane, out_lane, lanes: int, table: list[int], out_shape) -> None:
        self.table, self.lanes = [int(v) for v in table], lanes
        self.in_lane, self.out_lane = Shape.cast(in_lane), Shape.cast(out_lane)
        if len(self.table) > 1 << self.in_lane.width:
            raise ValueError(f"Lookup: {len(self.table)} entries do not fit a {self.in_lane.width}-bit index")
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(self.in_lane, lanes))),
                          "o": Out(stream.Signature(out_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        out = Value.cast(self.o.payload)
        ow = self.out_lane.width
        for k in range(self.lanes):
            index = Value.cast(self.i.payload[k])
            value = Signal(self.out_lane, name=f"looked_up{k}")
            with m.Switch(index):
                for v, entry in enumerate(self.table):
                    with m.Case(v):
                        m.d.comb += value.eq(entry)
                with m.Default():  # an index past the table (a raw value the data cannot hold): the last entry
                    m.d.comb += value.eq(self.table[-1])
            m.d.comb += out[k * ow : (k + 1) * ow].eq(value)
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        return m


def class_layout(score_lane, classes: int) -> data.StructLayout:
    """The accelerator's result: the class index (lowest bits) and every score."""
    return data.StructLayout({"index": unsigned(bits_for(max(classes - 1, 1))),
                              "scores": data.ArrayLayout(score_lane, classes)})


class Argmax(wiring.Component):
    """The class: the index of the largest score (the lowest index among equal ones), and every score.

    Takes a frame's scores in one transfer (a :class:`Gather` collects them from the last engine). A
    tournament: of two neighbours the later (higher indices) wins only when larger, so ties go to the
    lowest index; each round is a register stage, so the comparators in a cycle are one round's (the
    SFC on ECP5 ran at 55 MHz with the four rounds of ten classes in one cycle, its critical path).
    All stages move together while the output is free or taken (a stalled output holds them all).

    Members
    -------
    i: ``In(stream.Signature(ArrayLayout(score_lane, classes)))``;
    o: ``Out(stream.Signature(class_layout(score_lane, classes)))``.
    latency: register stages from ``i`` to ``o`` (``max(1, ceil(log2(classes)))``).
    """

    def __init__(self, score_lane, classes: int) -> None:
        self.classes, self.score_lane = classes, Shape.cast(score_lane)
        self.latency = max(1, (classes - 1).bit_length())
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(score_lane, classes))),
                          "o": Out(stream.Signature(class_layout(score_lane, classes)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        index_shape = range(max(self.classes, 2))
        moves = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(moves)
        scores, valid = Value.cast(self.i.payload), self.i.valid
        entrants = [(self.i.payload[k], Const(k, index_shape)) for k in range(self.classes)]
        for stage in range(self.latency):
            paired = []
            for k in range(0, len(entrants) - 1, 2):
                (low, low_index), (high, high_index) = entrants[k], entrants[k + 1]
                better = high > low
                paired.append((Mux(better, high, low), Mux(better, high_index, low_index)))
            entrants = paired + entrants[len(entrants) - len(entrants) % 2:]
            last = stage == self.latency - 1
            held = [(Signal(self.score_lane, name=f"best{stage}_{k}"), Signal(index_shape, name=f"index{stage}_{k}"))
                    for k in range(len(entrants))]
            if last:
                kept_scores, kept_valid = Value.cast(self.o.payload.scores), self.o.valid
            else:
                kept_scores = Signal(len(scores), name=f"scores{stage}")
                kept_valid = Signal(name=f"valid{stage}")
            with m.If(moves):
                m.d.sync += [kept_scores.eq(scores), kept_valid.eq(valid)]
                m.d.sync += [r.eq(v) for (rb, ri), (vb, vi) in zip(held, entrants) for r, v in ((rb, vb), (ri, vi))]
            entrants, scores, valid = held, kept_scores, kept_valid
        m.d.comb += self.o.payload.index.eq(entrants[0][1])
        return m


def _raster(m: Module, rows: int, cols: int, advance: Value) -> tuple[Signal, Signal, Value]:
    """A frame's position in raster order, moving on ``advance``: (row, column, at the end of a row)."""
    row, col = Signal(range(rows), name="row"), Signal(range(cols), name="col")
    end_of_row = col == cols - 1
    with m.If(advance):
        with m.If(end_of_row):
            m.d.sync += [col.eq(0), row.eq(Mux(row == rows - 1, 0, row + 1))]
        with m.Else():
            m.d.sync += col.eq(col + 1)
    return row, col, end_of_row


class Padder(wiring.Component):
    """Surrounds a frame of ``height x width`` pixels with ``pad`` pixels of ``value`` on every side.

    Pixels in raster order, in and out; ``(height + 2 pad) x (width + 2 pad)`` out per frame. A padded
    position sends ``value`` without taking an input (a convolution's padding holds the real value 0:
    the input zero point in every lane).
    """

    def __init__(self, pixel_shape, height: int, width: int, pad: int, value: int) -> None:
        self.height, self.width, self.pad, self.value = height, width, pad, value
        super().__init__({"i": In(stream.Signature(pixel_shape)), "o": Out(stream.Signature(pixel_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        p, rows, cols = self.pad, self.height + 2 * self.pad, self.width + 2 * self.pad
        row, col, _ = _raster(m, rows, cols, self.o.valid & self.o.ready)
        inside = (row >= p) & (row < rows - p) & (col >= p) & (col < cols - p)
        pixel = Value.cast(self.o.payload)
        m.d.comb += [self.o.valid.eq(Mux(inside, self.i.valid, 1)), self.i.ready.eq(inside & self.o.ready),
                     pixel.eq(Mux(inside, Value.cast(self.i.payload), Const(self.value, len(pixel))))]
        return m


def _phase(m: Module, name: str, position: Signal, size: int, start: int, step: int, advance: Value) -> Value:
    """Whether ``position`` (0..size-1, advancing on ``advance``) is ``start`` plus a multiple of ``step``."""
    if step == 1:
        return position >= start
    phase = Signal(range(step), name=f"{name}_phase")  # (position - start) mod step, for position >= start
    with m.If(advance):
        with m.If((position + 1 == start) | (position == size - 1)):
            m.d.sync += phase.eq(0)
        with m.Elif(position >= start):
            m.d.sync += phase.eq(Mux(phase == step - 1, 0, phase + 1))
    return (position >= start) & (phase == 0) if start else (phase == 0)


class SlidingWindow(wiring.Component):
    """The ``kernel x kernel`` windows of a frame of ``rows x cols`` pixels, at ``stride``, in raster order.

    FINN's sliding window unit with line buffers: the pixels flow through a shift register of
    ``(kernel - 1)`` rows and ``kernel`` pixels, whose taps are the window whose bottom-right pixel has
    just arrived. A window leaves as one transfer: its pixels in (row, column) order, each pixel's lanes
    as they came, so window pixel ``(u, v)`` lane ``c`` is lane ``(u k + v) C + c``. The frame must come
    padded (:class:`Padder`); windows start at row and column 0, every ``stride``.
    """

    def __init__(self, pixel_shape, out_shape, rows: int, cols: int, kernel: int, stride: int) -> None:
        if width(out_shape) != kernel * kernel * width(pixel_shape):
            raise ValueError("SlidingWindow: a window is kernel x kernel pixels")
        self.rows, self.cols, self.kernel, self.stride = rows, cols, kernel, stride
        super().__init__({"i": In(stream.Signature(pixel_shape)), "o": Out(stream.Signature(out_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        k, w, h = self.kernel, self.cols, self.rows
        bits = width(self.i.signature.members["payload"].shape)
        history = [Signal(bits, name=f"line{n}", reset_less=True) for n in range((k - 1) * w + k - 1)]
        pixels = [Value.cast(self.i.payload), *history]  # pixels[a*W + b]: the pixel a rows and b columns back
        taken = self.i.valid & self.i.ready
        row, col, end_of_row = _raster(m, h, w, taken)
        in_row = _phase(m, "row", row, h, k - 1, self.stride, taken & end_of_row)
        in_col = _phase(m, "col", col, w, k - 1, self.stride, taken)
        window = Cat(*(pixels[(k - 1 - u) * w + (k - 1 - v)] for u in range(k) for v in range(k)))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(taken):
            m.d.sync += [dst.eq(src) for dst, src in zip(history, pixels)]
            with m.If(in_row & in_col):
                m.d.sync += [self.o.valid.eq(1), Value.cast(self.o.payload).eq(window)]
        return m


class WindowMax(wiring.Component):
    """Per lane of a pixel, the largest value over a window's pixels (max-pooling), in the same cycle."""

    def __init__(self, window_shape, pixel_shape, lane, pixels: int) -> None:
        self.lane, self.pixels = Shape.cast(lane), pixels
        super().__init__({"i": In(stream.Signature(window_shape)), "o": Out(stream.Signature(pixel_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        lw, lanes = self.lane.width, width(self.o.signature.members["payload"].shape) // self.lane.width
        window, out = Value.cast(self.i.payload), Value.cast(self.o.payload)
        for c in range(lanes):
            values = [window[(n * lanes + c) * lw : (n * lanes + c + 1) * lw] for n in range(self.pixels)]
            values = [v.as_signed() if self.lane.signed else v for v in values]
            best = values[0]
            for v in values[1:]:
                best = Mux(v > best, v, best)
            m.d.comb += out[c * lw : (c + 1) * lw].eq(best)
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        return m


class Fifo(wiring.Component):
    """A first-in first-out buffer of ``depth`` transfers between two stages, so that a stage that takes its
    input in bursts (a sliding window in front of a folded engine) does not stall the stages before it.
    Amaranth's ``SyncFIFOBuffered`` (block RAM where synthesis finds one), with typed stream ports."""

    def __init__(self, shape, depth: int) -> None:
        self.depth = depth
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform) -> Module:
        from amaranth.lib.fifo import SyncFIFOBuffered

        m = Module()
        m.submodules.buffer = buffer = SyncFIFOBuffered(width=width(self.i.signature.members["payload"].shape),
                                                        depth=self.depth)
        m.d.comb += [buffer.w_data.eq(Value.cast(self.i.payload)), buffer.w_en.eq(self.i.valid),
                     self.i.ready.eq(buffer.w_rdy),
                     Value.cast(self.o.payload).eq(buffer.r_data), self.o.valid.eq(buffer.r_rdy),
                     buffer.r_en.eq(self.o.ready)]
        return m
