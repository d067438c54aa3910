"""The control shared by the folded matrix-vector units (FINN's NF x SF schedule)."""

from __future__ import annotations

from typing import Callable

from amaranth import Module, Mux, Signal


def adder_tree(terms: list) -> object:
    """The sum of ``terms`` as a balanced tree (depth log2(n)), not a chain: popcounts and dot products."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def folded_schedule(m: Module, unit, in_lane_bits: int, accs: list[Signal],
                    datapath: Callable[[Signal, object, Signal], None]) -> tuple[Signal, Signal]:
    """Latch one input vector, then walk ``NF x SF`` cycles, holding while the output is not taken.

    ``unit`` has ``i``/``o`` streams and ``nf``, ``sf``, ``simd``. ``datapath(x, last, nf)`` is
    called inside the "advance" condition with this cycle's ``SIMD`` input lanes ``x``; on ``last``
    (the last SF slice) it must load ``o.payload`` and clear ``accs``. Returns the (nf, sf) counters,
    which address the units' weight and constant ROMs.
    """
    vec = Signal(len(unit.i.payload))
    busy = Signal()
    nf = Signal(range(max(unit.nf, 2)))
    sf = Signal(range(max(unit.sf, 2)))
    m.d.comb += unit.i.ready.eq(~busy)
    with m.If(unit.i.valid & ~busy):
        m.d.sync += [vec.eq(unit.i.payload), busy.eq(1), nf.eq(0), sf.eq(0)] + [a.eq(0) for a in accs]
    # This cycle's SIMD input lanes: a mux over the SF slices, as a plain expression (an `assign` in
    # Verilog), not a Switch: Icarus never runs an `always @*` block whose inputs keep their
    # initial values, which would leave it X.
    width = in_lane_bits * unit.simd
    sel = vec[:width]
    for k in range(1, unit.sf):
        sel = Mux(sf == k, vec[k * width : (k + 1) * width], sel)
    x = Signal(width)
    m.d.comb += x.eq(sel)
    stall = unit.o.valid & ~unit.o.ready
    with m.If(unit.o.valid & unit.o.ready):  # before the set below, so a new result wins
        m.d.sync += unit.o.valid.eq(0)
    with m.If(busy & ~stall):
        last = sf == unit.sf - 1
        datapath(x, last, nf)
        with m.If(last):
            m.d.sync += [sf.eq(0), unit.o.valid.eq(1)]
            with m.If(nf == unit.nf - 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += nf.eq(nf + 1)
        with m.Else():
            m.d.sync += sf.eq(sf + 1)
    return nf, sf
