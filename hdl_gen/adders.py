"""Sums of a unit's lanes: balanced adder trees (the MAC's products) and the per-lane accumulator."""

from __future__ import annotations

from collections.abc import Callable

from amaranth import Module, Mux, Signal, Value

from hdl_gen.pipeline import Slice, cut_after, regroup


def _pairwise(terms: list) -> list:
    return [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + ([terms[-1]] if len(terms) % 2 else [])


def adder_trees(trees: list[list], cut: Callable[[list], list] | None = None, every: int = 0) -> list:
    """Sum each list of (signed or unsigned) ``trees`` as a balanced tree of adders (depth log2(n)).

    With ``cut``, the partial sums of all trees pass through ``cut`` (a pipeline register that also
    carries the caller's slice) after the first level and every ``every`` levels from there; the
    last level is never cut. (The MAC's products; the XNOR popcount is :mod:`hdl_gen.compressor`.)
    """
    trees = [list(t) for t in trees]
    level = 0
    while any(len(t) > 1 for t in trees):
        trees = [_pairwise(t) for t in trees]
        level += 1
        if cut is not None and cut_after(level, every, 1) and any(len(t) > 1 for t in trees):
            regroup(cut([v for t in trees for v in t]), trees)
    return [t[0] for t in trees]


def tree_cuts(n: int, every: int) -> int:
    """How many pipeline registers :func:`adder_trees` puts into a tree of ``n`` terms."""
    levels = max(n - 1, 0).bit_length()
    return sum(cut_after(level, every, 1) for level in range(1, levels))


def accumulate(m: Module, en: Value, slice_: Slice, counts: list, shape, starts: list | None = None) -> list[Signal]:
    """Per lane: this slice's count plus the running sum (restarted on the first slice from 0, or from
    the lane's value in ``starts``); the totals."""
    totals = []
    for p, count in enumerate(counts):
        acc, total = Signal(shape, name=f"acc{p}"), Signal(shape, name=f"total{p}")
        m.d.comb += total.eq(Mux(slice_.first, starts[p] if starts else 0, acc) + count)
        with m.If(en & slice_.valid):
            m.d.sync += acc.eq(total)
        totals.append(total)
    return totals
