"""The XNOR unit's popcount: a carry-save compressor (a Wallace tree of full adders over bit columns).

Each lane's terms (bits, or few-bit counts) are summed column by column: every three bits of a
column become a full adder's sum (that column) and carry (the next), layer after layer, until two
rows are left for one final adder. The full adders between pipeline registers are plain logic, which
synthesis packs into LUTs; a tree of two-operand adders would instead put a carry chain between
every pair of registers. Every lane's bits sit side by side in one vector per column slot, so each
full adder is word-wide logic for all lanes at once, which simulators evaluate in one step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaranth import Cat, Const, Module, Value

from hdl_gen.pipeline import cut_after, regroup, wires


def _term(t) -> tuple[Value, int]:
    """A compressor term as (value, mask): ``value ^ mask``, ``mask`` a constant (0: not inverted)."""
    return (Value.cast(t[0]), int(t[1])) if isinstance(t, tuple) else (Value.cast(t), 0)


def _inverted(v: Value, mask: int) -> Value:
    return v ^ Const(mask, len(v)) if mask else v


def term_value(t) -> Value:
    """The value of a compressor term (a value, or ``(value, mask)`` for ``value ^ mask``)."""
    return _inverted(*_term(t))


def _constant_bits(consts: list[int]) -> list[tuple[int, int]]:
    """Per tree a constant: (column, mask of the trees whose constant has a 1 there), where any has."""
    bits = [(c, sum(((k >> c) & 1) << t for t, k in enumerate(consts))) for c in range(max(consts, default=0).bit_length())]
    return [(c, mask) for c, mask in bits if mask]


def _columns(trees: list[list], consts: list[int]) -> list[list]:
    """Terms as bit columns, least significant first, every tree side by side: slot ``k`` of column
    ``c`` is one vector holding bit ``c`` of term ``k`` of each tree (all trees have terms of the same
    widths), so each full adder below is word-wide logic for all trees at once, which simulators
    evaluate in one step. A slot is (vector, mask): the trees' inversions of that bit, kept apart.
    A 1 bit of a tree's constant is an inverted 0, last in its column."""
    trees = [[_term(t) for t in tree] for tree in trees]
    widths = [len(v) for v, _ in trees[0]]
    if any([len(v) for v, _ in tree] != widths for tree in trees):
        raise ValueError("compressor_trees sums trees whose terms have the same widths")

    def slot(k: int, c: int) -> tuple[Value, int]:
        mask = sum(((tree[k][1] >> c) & 1) << i for i, tree in enumerate(trees))
        return Cat(*(tree[k][0][c] for tree in trees)), mask

    return _layout(widths, consts, slot, lambda mask: (Const(0, len(trees)), mask))


def _layout(widths: list[int], consts: list[int], slot: Callable, constant: Callable) -> list[list]:
    """Columns of ``slot(k, c)`` for bit ``c`` of term ``k``, then ``constant(mask)`` for the constants' 1 bits."""
    cols = [[slot(k, c) for k, w in enumerate(widths) if w > c] for c in range(max(widths, default=0))]
    for c, mask in _constant_bits(consts):
        cols.extend([] for _ in range(c + 1 - len(cols)))
        cols[c].append(constant(mask))
    return cols


def _full_adder(a: Value, b: Value, c: Value) -> tuple[Value, Value]:
    return a ^ b ^ c, (a & b) | (a & c) | (b & c)


def _compress(cols: list[list], full_adder: Callable) -> list[list]:
    """One layer of a Wallace tree: every three bits of a column become a full adder's sum (this
    column) and carry (the next); the one or two left over pass through."""
    out: list[list] = [[] for _ in range(len(cols) + 1)]
    for c, bits in enumerate(cols):
        whole = len(bits) - len(bits) % 3
        for k in range(0, whole, 3):
            s, cy = full_adder(*bits[k : k + 3])
            out[c].append(s)
            out[c + 1].append(cy)
        out[c].extend(bits[whole:])
    return out if out[-1] else out[:-1]


def _tall(cols: list[list]) -> bool:
    return any(len(slots) > 2 for slots in cols)


def _csa_cut(layer: int, every: int, first: int | None, cols: list[list]) -> bool:
    """Whether :func:`compressor_trees` registers after ``layer``: after layer ``first`` (default
    ``every``) and every ``every`` layers from there, not after the last."""
    return cut_after(layer, every, every if first is None else first) and _tall(cols)


def compressor_trees(m: Module, trees: list[list], cut: Callable[[list], list] | None = None, every: int = 0,
                     first: int | None = None, consts: Sequence[int] = (), top: int | None = None) -> list:
    """Sum each list of unsigned ``trees`` (terms of the same widths in every tree) with a carry-save
    compressor, a Wallace tree of full adders over bit columns, down to two rows, then one adder.
    ``consts``, if given, adds a constant to each tree's sum: its 1 bits cost no input, only a full
    adder with a constant input, which synthesis simplifies. With ``top``, each tree's result is bit
    ``top`` of its sum alone, and the final adder a ripple of majority gates: plain logic, which
    synthesis packs into LUTs with the last full adders (an adder's carry chain would take a cell
    per bit and leave its sums unused).

    A term is a value or ``(value, mask)``, meaning ``value ^ mask`` for a constant ``mask``. The masks
    stay outside the registers and wires: a bit that passes a layer untouched is registered as it is,
    and the full adder that takes it later absorbs its inversion (on the iCE40 an inverted bit in
    front of a flip-flop or a carry chain is a LUT of its own).
    With ``cut``, the compressor's values pass through ``cut`` (a pipeline register that also carries
    the caller's metadata) after layer ``first`` of full adders (default ``every``) and every ``every``
    layers from there, while some column still holds more than two bits. The full adders between
    registers stay plain logic, which synthesis packs into LUTs; a tree of two-operand adders would
    instead put a carry chain between every pair of registers. Layers not cut are :func:`wires`.
    """
    cols = _columns(trees, list(consts))

    def full_adder(*slots):  # an inverted input through a wire: used three times, computed once
        s, cy = _full_adder(*(wires(m, "inv", [_inverted(v, mask)])[0] if mask else v for v, mask in slots))
        return (s, 0), (cy, 0)

    layer = 0
    while _tall(cols):
        cols = _compress(cols, full_adder)
        layer += 1
        values, masks = zip(*(x for slots in cols for x in slots))  # the masks stay out of registers and wires
        cut_here = cut is not None and _csa_cut(layer, every, first, cols)
        values = cut(list(values)) if cut_here else wires(m, f"csa{layer}_", values)
        regroup(list(zip(values, masks)), cols)
    rows = [[[_inverted(v[t], (mask >> t) & 1) for v, mask in row] for t in range(len(trees))]
            for row in ([slots[r] if len(slots) > r else (Const(0, len(trees)), 0) for slots in cols] for r in (0, 1))]
    if top is None:
        return [Cat(*a) + Cat(*b) for a, b in zip(*rows)]
    return [_sum_bit(a, b, top) for a, b in zip(*rows)]


def _sum_bit(a: list, b: list, top: int) -> Value:
    """Bit ``top`` of ``a + b`` (bits least significant first) as logic: the carries ripple in majority
    gates, written with one use of the carry (two would double the expression at every bit)."""
    cy = Const(0, 1)
    for i in range(min(top, len(a))):
        cy = (a[i] & b[i]) | ((a[i] | b[i]) & cy)
    if top < len(a):
        return a[top] ^ b[top] ^ cy
    # the carry out; past it a bit the sum cannot reach (defensive: the units' columns always reach `top`)
    return cy if top == len(a) else Const(0, 1)


def compressor_cuts(widths: list[int], every: int, first: int | None = None, consts: Sequence[int] = ()) -> int:
    """How many pipeline registers :func:`compressor_trees` puts into a tree of terms ``widths`` bits wide
    (and the trees' ``consts``)."""
    cols = _layout(widths, list(consts), lambda k, c: None, lambda mask: None)
    layers, cuts = 0, 0
    while _tall(cols):
        cols = _compress(cols, lambda a, b, c: (None, None))
        layers += 1
        cuts += _csa_cut(layers, every, first, cols)
    return cuts
