"""The fold schedule of a matrix-vector unit: latch an input vector, then issue its NF x SF slices.

A unit computes an ``MH x MW`` matrix ``PE`` outputs at a time from ``SIMD`` inputs a cycle: the
``NF = MH / PE`` output groups times the ``SF = MW / SIMD`` input slices of a vector are issued one
per enabled cycle, and the next vector is accepted in the cycle that issues the last slice of the
current one, so back-to-back vectors flow without a bubble (FINN's MVAU does the same).
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from fxp.errors import FxpError
from hdl_gen.pipeline import OutputStage, Slice


def check_folding(mh: int, mw: int, pe: int, simd: int) -> None:
    """``MH % PE == 0`` and ``MW % SIMD == 0``, or an error that says which divisors to pick."""
    for name, v in (("PE", pe), ("SIMD", simd)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise FxpError(f"{name} must be a positive whole number, got {v!r}")
    if mh % pe:
        raise FxpError(f"MH={mh} is not a multiple of PE={pe}; choose PE among the divisors of MH")
    if mw % simd:
        raise FxpError(f"MW={mw} is not a multiple of SIMD={simd}; choose SIMD among the divisors of MW")


def select(words: list, index: Value) -> Value:
    """``words[index]`` as a tree of 2:1 muxes, one level per bit of ``index``.

    (A variable ``word_select`` becomes a shift that Verilator lints as truncating, and Amaranth's
    simulator refuses deeply nested Mux chains: the tree is log2(len(words)) deep.) An ``index`` past
    the end is not expected: the odd word out at a level passes through whatever that bit says.
    """
    bit = 0
    while len(words) > 1:
        words = [Mux(index[bit], words[k + 1], words[k]) if k + 1 < len(words) else words[k]
                 for k in range(0, len(words), 2)]
        bit += 1
    return words[0]


class Issued(NamedTuple):
    """A slice as the unit reads it from its schedule: the enable, the slice's lanes ``x``, the whole
    ``vector``, its ROM address and the :class:`~hdl_gen.pipeline.Slice` that travels beside its data
    (constants where nothing is folded, so synthesis sees them)."""

    en: Value
    x: Value
    vector: Value
    addr: Value
    slice: Slice


class FoldSchedule(wiring.Component):
    """Takes input vectors and issues their ``NF x SF`` slices, one per cycle in which ``en`` is high.

    Parameters
    ----------
    payload: the shape of an input vector (a flat ``unsigned(MW * IW)`` or a layout of ``MW`` lanes).
    lane_bits: ``IW``, the width of one input lane.
    nf, sf, simd: output groups, input slices, lanes per slice.

    Members
    -------
    i: ``In(stream.Signature(payload))`` — the unit's input vectors.
    en: ``In(1)`` — the unit's enable (its output stage holds everything while a result waits).
    x: ``Out(unsigned(SIMD * IW))`` — the lanes of the slice issued this cycle.
    vector: ``Out(unsigned(MW * IW))`` — the whole latched vector (count tables read several slices).
    addr: ``Out(range(NF * SF))`` — ``group * SF + slice``, a ROM address.
    group: ``Out(range(NF))`` — the output group of the slice.
    first, last: ``Out(1)`` — the slice is the first / last of its group.
    valid: ``Out(1)`` — a slice is issued this cycle.

    Where nothing is folded the counters are not built, and :meth:`issued` gives the unit constants
    instead of these ports, so that synthesis (and the unit's own pipeline registers) see them.
    """

    def __init__(self, payload, lane_bits: int, nf: int, sf: int, simd: int) -> None:
        self.nf, self.sf, self.simd, self.lane_bits = nf, sf, simd, lane_bits
        width = payload.size if isinstance(payload, data.Layout) else Shape.cast(payload).width
        super().__init__({
            "i": In(stream.Signature(payload)),
            "en": In(1),
            "x": Out(unsigned(simd * lane_bits)),
            "vector": Out(unsigned(width)),
            "addr": Out(range(max(nf * sf, 2))),
            "group": Out(range(max(nf, 2))),
            "first": Out(1), "last": Out(1), "valid": Out(1),
        })

    def issued(self) -> Issued:
        """This cycle's slice as the unit reads it: ports, or constants where nothing is folded."""
        group = Const(0, 1) if self.nf == 1 else self.group
        first, last = (Const(1, 1), Const(1, 1)) if self.sf == 1 else (self.first, self.last)
        addr = Const(0, 1) if self.nf * self.sf == 1 else self.addr
        return Issued(self.en, self.x, self.vector, addr, Slice(group, first, last, self.valid))

    def elaborate(self, platform) -> Module:
        m = Module()
        nf_n, sf_n = self.nf, self.sf
        en = self.en
        busy = Signal()
        group = Signal(range(nf_n), name="group") if nf_n > 1 else Const(0, 1)  # counters where folded
        slice_ = Signal(range(sf_n), name="slice") if sf_n > 1 else Const(0, 1)
        depth = nf_n * sf_n
        addr = Signal(range(depth), name="addr") if depth > 1 else Const(0, 1)  # group * SF + slice, counted
        # Where folded, "last slice" and "last group" are registers set a step ahead, so the handshake
        # (in_ready, the input register's enable) sees no counter compare: it was the iCE40's critical path.
        # (`~slice.any()`, not `slice == 0`: Verilator lints `!slice` as a truncation.)
        first = Const(1, 1) if sf_n == 1 else ~slice_.any()
        last = Const(1, 1) if sf_n == 1 else Signal(name="last_slice")
        last_group = Const(1, 1) if nf_n == 1 else Signal(name="last_group")
        # Folded both ways, the AND of the two flags is a register too: one LUT level less to in_ready.
        both = sf_n > 1 and nf_n > 1
        last_of_vector = Signal(name="last_of_vector") if both else last & last_group
        m.d.comb += self.i.ready.eq(en & (~busy | last_of_vector))
        vector = Signal(len(self.vector), name="vector_latch")
        width = self.lane_bits * self.simd

        def cleared(*regs) -> list:  # the registers among `regs` (the rest are constants or expressions), set to 0
            return [r.eq(0) for r in regs if isinstance(r, Signal)]

        with m.If(en & busy):
            if depth > 1:
                m.d.sync += addr.eq(Mux(last_of_vector, 0, addr + 1))
            with m.If(last):
                m.d.sync += cleared(slice_, last, last_of_vector)
                with m.If(last_of_vector):
                    m.d.sync += busy.eq(0)
                with m.Else():
                    if nf_n > 1:
                        m.d.sync += [group.eq(group + 1), last_group.eq(group == nf_n - 2)]
            if sf_n > 1:
                with m.Else():
                    m.d.sync += [slice_.eq(slice_ + 1), last.eq(slice_ == sf_n - 2)]
                    if both:
                        m.d.sync += last_of_vector.eq((slice_ == sf_n - 2) & last_group)
        with m.If(self.i.valid & self.i.ready):  # after the advance above, so a new vector wins
            m.d.sync += [vector.eq(self.i.payload), busy.eq(1),
                         *cleared(group, slice_, addr, last, last_group, last_of_vector)]
        # This cycle's lanes: slice `slice` of the latched vector through an SF:1 mux per lane, which the
        # vector register does not pass through (rotating the vector by a slice per issue instead costs
        # a 2:1 mux on every one of its bits: 25-35 % more LUT4 for SF = 2 on the iCE40).
        m.d.comb += [self.x.eq(select([vector.word_select(k, width) for k in range(sf_n)], slice_)),
                     self.vector.eq(vector), self.addr.eq(addr), self.group.eq(group), self.first.eq(first),
                     self.last.eq(last), self.valid.eq(busy)]
        return m


def fold_unit(m: Module, unit) -> tuple[Issued, OutputStage]:
    """The frame of a folded unit: its input stream into a :class:`FoldSchedule`, an
    :class:`~hdl_gen.pipeline.OutputStage` (with a skid register where ``unit.pipeline``) into its
    output stream, the stage's enable to the schedule. Returns this cycle's slice and the output stage,
    whose ``lanes`` and ``valid`` the unit drives."""
    payload = unit.i.signature.members["payload"].shape
    m.submodules.schedule = schedule = FoldSchedule(payload, unit.in_lane_width, unit.nf, unit.sf, unit.simd)
    m.submodules.output = output = OutputStage(unit.o.signature.members["payload"].shape, skid=unit.pipeline)
    wiring.connect(m, wiring.flipped(unit.i), schedule.i)
    wiring.connect(m, output.o, wiring.flipped(unit.o))
    m.d.comb += schedule.en.eq(output.en)
    return schedule.issued(), output
