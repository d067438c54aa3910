"""Streaming stages that join the engines into a network: widen a stream, look values up, pick the class.

Each is a component with a stream in and a stream out, and no stage's ``ready`` depends on its
consumer's ``ready`` in the same cycle except :class:`Lookup` (a combinational map, nothing held),
so that chaining them adds no combinational path through the network.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Shape, Signal, Value, unsigned
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
        complete = Signal(w * n)  # the collector with this cycle's piece in its slot
        m.d.comb += complete.eq(collected)
        with m.Switch(index):
            for k in range(n):
                with m.Case(k):
                    m.d.comb += complete.word_select(k, w).eq(piece)
        out_free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(~held)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(held & out_free):
            m.d.sync += [Value.cast(self.o.payload).eq(collected), self.o.valid.eq(1), held.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += collected.eq(complete)
            with m.If(index == n - 1):
                m.d.sync += index.eq(0)
                with m.If(out_free):
                    m.d.sync += [Value.cast(self.o.payload).eq(complete), self.o.valid.eq(1)]
                with m.Else():
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

    Takes the last engine's ``count`` transfers of ``lanes`` scores; emits one transfer per frame.

    Members
    -------
    i: ``In(stream.Signature(in_shape))``; o: ``Out(stream.Signature(class_layout(score_lane, count * lanes)))``.
    """

    def __init__(self, in_shape, score_lane, lanes: int, count: int) -> None:
        self.score_lane, self.lanes, self.count = Shape.cast(score_lane), lanes, count
        super().__init__({"i": In(stream.Signature(in_shape)),
                          "o": Out(stream.Signature(class_layout(self.score_lane, lanes * count)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        lane, sw, n, classes = self.score_lane, self.score_lane.width, self.count, self.lanes * self.count
        piece = Value.cast(self.i.payload)
        scores = [piece[k * sw : (k + 1) * sw].as_signed() if lane.signed else piece[k * sw : (k + 1) * sw]
                  for k in range(self.lanes)]
        best, best_index = Signal(lane, name="best"), Signal(range(max(classes, 2)), name="best_index")
        transfer = Signal(range(max(n, 2)), name="transfer")
        kept = Signal(sw * classes, name="scores", reset_less=True)
        # this transfer's lanes against the best so far, in order: a later lane wins only when larger
        run, run_index = best, best_index
        for k, score in enumerate(scores):
            first = (transfer == 0) if k == 0 else Const(0, 1)
            better = first | (score > run)
            run, run_index = Mux(better, score, run), Mux(better, transfer * self.lanes + k, run_index)
        done = Signal(sw * classes)  # the scores kept so far with this transfer's in its place
        m.d.comb += done.eq(kept)
        with m.Switch(transfer):
            for t in range(n):
                with m.Case(t):
                    m.d.comb += done[t * sw * self.lanes : (t + 1) * sw * self.lanes].eq(piece)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [best.eq(run), best_index.eq(run_index), kept.eq(done)]
            with m.If(transfer == n - 1):
                m.d.sync += [transfer.eq(0), self.o.valid.eq(1), self.o.payload.index.eq(run_index),
                             Value.cast(self.o.payload.scores).eq(done)]
            with m.Else():
                m.d.sync += transfer.eq(transfer + 1)
        return m
