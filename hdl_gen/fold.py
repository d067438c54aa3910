"""What the folded matrix-vector units share: the NF x SF issue schedule, pipeline registers, adder trees.

The units are stall-all pipelines: every register advances on one enable, so a result that the
consumer does not take freezes the whole unit and nothing is lost (FINN's MVAU does the same).
:func:`deliver` makes the enable: ``~(o.valid & ~o.ready)`` directly, or, with a skid register on the
output, ``~skid_valid``, so that ``o.ready`` reaches only the output registers and not the enable of
every other one. Metadata (valid, first/last slice, output group) travels beside the data through
the same registers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

from amaranth import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib.memory import Memory

from fxp.errors import FxpError
from hdl_gen import dp16kd


def refused_quietly(init: Callable) -> Callable:
    """For a unit's ``__init__``: a unit refused while it is built (bad options, a layer it cannot take)
    does not warn later that it was never elaborated (Amaranth's ``UnusedElaboratable``, raised when
    the half-built object is collected): the error already said what was wrong."""

    @functools.wraps(init)
    def checked(self, *args, **kwargs) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._MustUse__silence = True  # Amaranth's per-object switch for that check (amaranth/_unused.py)
            raise

    return checked


def check_folding(mh: int, mw: int, pe: int, simd: int) -> None:
    """``MH % PE == 0`` and ``MW % SIMD == 0``, or an error that says which divisors to pick."""
    for name, v in (("PE", pe), ("SIMD", simd)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise FxpError(f"{name} must be a positive whole number, got {v!r}")
    if mh % pe:
        raise FxpError(f"MH={mh} is not a multiple of PE={pe}; choose PE among the divisors of MH")
    if mw % simd:
        raise FxpError(f"MW={mw} is not a multiple of SIMD={simd}; choose SIMD among the divisors of MW")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise FxpError(f"{name}={value!r} is not known; use {' or '.join(allowed)}")


WEIGHTS_IN = {"logic": 0, "bram": 1, "dp16kd": 2}  # where the weights are held: the cycles a read takes


def check_weights_in(weights_in: str, words: int) -> None:
    """A known place for ``words`` weight words (one per issued slice), with room for them."""
    check_choice("weights_in", weights_in, tuple(WEIGHTS_IN))
    if weights_in == "dp16kd":
        dp16kd.check_depth(words)


META = ("nf", "first", "last", "valid")  # what travels beside a slice's data through the pipeline


class Issue(NamedTuple):
    """One issued slice: the unit's enable, ``x`` (SIMD lanes), its ROM address, output group ``nf``,
    first/last slice, valid; ``vec``, the whole latched input vector."""

    en: Value
    x: Value
    addr: Value
    nf: Value
    first: Value
    last: Value
    valid: Value
    vec: Value


def folded_issue(m: Module, unit, in_lane_bits: int) -> Issue:
    """Latch an input vector, then issue its ``NF x SF`` slices, one per enabled cycle.

    ``unit`` has ``i``/``o`` streams and ``nf``, ``sf``, ``simd``. The next vector is accepted in the
    cycle that issues the last slice of the current one, so back-to-back vectors flow without a bubble
    (one vector per ``NF x SF`` cycles). The enable of the whole unit is made by :func:`deliver`.
    """
    en = Signal(name="en")  # driven by deliver()
    vec = Signal(len(unit.i.payload))
    busy = Signal()
    nf = Signal(range(unit.nf), name="nf") if unit.nf > 1 else Const(0, 1)  # counters where folded
    sf = Signal(range(unit.sf), name="sf") if unit.sf > 1 else Const(0, 1)
    depth = unit.nf * unit.sf
    addr = Signal(range(depth), name="addr") if depth > 1 else Const(0, 1)  # nf * SF + sf, counted
    # Constants where nothing is folded, so synthesis drops the accumulators and the ROM addressing.
    # Where folded, "last slice" and "last group" are registers set a step ahead, so the handshake
    # (in_ready, the input register's enable) sees no counter compare: it was the iCE40's critical path.
    # (`~sf.any()`, not `sf == 0`: Verilator lints `!sf` as a truncation.)
    first = Const(1, 1) if unit.sf == 1 else ~sf.any()
    last = Const(1, 1) if unit.sf == 1 else Signal(name="last_slice")
    last_group = Const(1, 1) if unit.nf == 1 else Signal(name="last_group")
    # Folded both ways, the AND of the two flags is a register too: one LUT level less to in_ready.
    both = unit.sf > 1 and unit.nf > 1
    last_of_vector = Signal(name="last_of_vector") if both else last & last_group
    m.d.comb += unit.i.ready.eq(en & (~busy | last_of_vector))
    width = in_lane_bits * unit.simd

    def cleared(*regs) -> list:  # the registers among `regs` (the rest are constants or expressions), set to 0
        return [r.eq(0) for r in regs if isinstance(r, Signal)]

    with m.If(en & busy):
        if depth > 1:
            m.d.sync += addr.eq(Mux(last_of_vector, 0, addr + 1))
        with m.If(last):
            m.d.sync += cleared(sf, last, last_of_vector)
            with m.If(last_of_vector):
                m.d.sync += busy.eq(0)
            with m.Else():
                if unit.nf > 1:
                    m.d.sync += [nf.eq(nf + 1), last_group.eq(nf == unit.nf - 2)]
        if unit.sf > 1:
            with m.Else():
                m.d.sync += [sf.eq(sf + 1), last.eq(sf == unit.sf - 2)]
                if both:
                    m.d.sync += last_of_vector.eq((sf == unit.sf - 2) & last_group)
    with m.If(unit.i.valid & unit.i.ready):  # after the advance above, so a new vector wins
        m.d.sync += [vec.eq(unit.i.payload), busy.eq(1), *cleared(nf, sf, addr, last, last_group, last_of_vector)]
    # This cycle's lanes: slice `sf` of the latched vector through an SF:1 mux per lane, which the
    # vector register does not pass through (rotating the vector by a slice per issue instead costs
    # a 2:1 mux on every one of its bits: 25-35 % more LUT4 for SF = 2 on the iCE40).
    x = select([vec.word_select(k, width) for k in range(unit.sf)], sf)
    return Issue(en, x, addr, nf, first, last, busy, vec)


def pack(values, width: int = 1) -> int:
    """``values`` as one ROM word, ``width`` bits each (two's complement), the first the least significant."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    return word


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


def stage(m: Module, en: Value, name: str, values: dict[str, Value]) -> dict[str, Signal]:
    """One pipeline register per value, loaded when ``en``: the same names, one cycle later.

    Constants pass through as they are. Only ``valid`` is reset: data registers need no reset, and
    without one synthesis can fold them into block RAM output registers and DSP pipeline registers.
    """
    out = {}
    for key, v in values.items():
        v = Value.cast(v)
        if isinstance(v, Const):  # e.g. first/last when nothing is folded: synthesis must still see them
            out[key] = v
            continue
        r = Signal(v.shape(), name=f"{name}_{key}", reset_less=key != "valid")
        with m.If(en):
            m.d.sync += r.eq(v)
        out[key] = r
    return out


def wires(m: Module, name: str, values: list) -> list[Value]:
    """Each value through a wire of its own: Amaranth copies an expression into every place that uses
    it (the Verilog, and the simulators' work, grow with the uses); a wire is computed once.
    Constants pass as they are, so no pipeline register downstream holds one."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, Const):
            out.append(v)
            continue
        w = Signal(Value.cast(v).shape(), name=f"{name}{i}")
        m.d.comb += w.eq(v)
        out.append(w)
    return out


def carry(m: Module, en: Value, name: str, s: dict, values: list) -> tuple[dict, list]:
    """One pipeline stage for ``values`` and the slice metadata of ``s``: (metadata, values), a cycle later."""
    r = stage(m, en, name, {**{k: s[k] for k in META}, **{f"v{i}": v for i, v in enumerate(values)}})
    return r, [r[f"v{i}"] for i in range(len(values))]


def rom(m: Module, name: str, width: int, words: list[int], addr: Value, *, sync_en: Value | None = None,
        block_ram: bool = False) -> Value:
    """A constant table read at ``addr``; with ``sync_en`` the read is synchronous (one cycle late).

    ``block_ram`` asks Yosys for block RAM (``ram_style``), which only a synchronous read can use.
    A single word is a plain constant either way: nothing to address, nothing to store.
    """
    if len(words) == 1:
        return Const(words[0], width)
    mem = Memory(shape=unsigned(width), depth=len(words), init=words,
                 attrs={"ram_style": "block"} if block_ram else None)
    m.submodules[name] = mem
    port = mem.read_port(domain="comb" if sync_en is None else "sync")
    m.d.comb += port.addr.eq(addr)
    if sync_en is not None:
        m.d.comb += port.en.eq(sync_en)
    return port.data


def read_rom(m: Module, name: str, width: int, words: list[int], addr: Value, en: Value, weights_in: str) -> Value:
    """``words[addr]`` from where ``weights_in`` (a key of :data:`WEIGHTS_IN`) holds them: ``"logic"``,
    a table in LUTs; ``"bram"``, block RAM that Yosys infers, a cycle late; ``"dp16kd"``, ECP5 block
    RAM through its output register (:mod:`hdl_gen.dp16kd`), two cycles late. Reads advance on ``en``."""
    if weights_in == "logic" or len(words) == 1:
        return rom(m, name, width, words, addr)
    if weights_in == "bram":
        return rom(m, name, width, words, addr, sync_en=en, block_ram=True)
    return dp16kd.rom(m, name, width, words, addr, en)


def meet_reads(m: Module, iss: Issue, weights_in: str, with_x: bool = True) -> dict:
    """The issued slice (``x`` unless not ``with_x``, and its metadata), registered as often as a
    read from ``weights_in`` takes, so that it lines up with what :func:`read_rom` returns."""
    s = {**({"x": iss.x} if with_x else {}), **{k: getattr(iss, k) for k in META}}
    for k in range(WEIGHTS_IN[weights_in]):
        s = stage(m, iss.en, f"fetch{k}" if k else "fetch", s)
    return s


def fetch_weights(m: Module, iss: Issue, width: int, words: list[int], weights_in: str) -> tuple[Value, dict]:
    """The weight word of the issued slice (``words[nf * SF + sf]``), and the slice it lines up with."""
    return read_rom(m, "wrom", width, words, iss.addr, iss.en, weights_in), meet_reads(m, iss, weights_in)


def accumulate(m: Module, en: Value, s: dict, counts: list, shape, starts: list | None = None) -> list[Signal]:
    """Per lane: this slice's count plus the running sum (restarted on the first slice from 0, or from
    the lane's value in ``starts``); the totals."""
    totals = []
    for p, count in enumerate(counts):
        acc, total = Signal(shape, name=f"acc{p}"), Signal(shape, name=f"total{p}")
        m.d.comb += total.eq(Mux(s["first"], starts[p] if starts else 0, acc) + count)
        with m.If(en & s["valid"]):
            m.d.sync += acc.eq(total)
        totals.append(total)
    return totals


def deliver(m: Module, unit, en: Value, valid: Value, lanes: list, lane_width: int, skid: bool = False) -> None:
    """Load ``lanes`` into the output register when ``valid``; ``o.valid`` stays until taken. Drives ``en``.

    Without ``skid``, ``en = ~(o.valid & ~o.ready)``: the consumer's ready reaches, through ``en``, every
    register of the unit and ``i.ready`` in the same cycle. With ``skid``, a result that arrives while
    the output register is held goes into a skid register, and ``en = ~skid_valid`` comes from a
    register: ``o.ready`` reaches only the output registers (the iCE40's critical path before). The
    latency is the same; the skid costs a register and a 2:1 mux per output bit.
    """
    o = unit.o
    if not skid:
        m.d.comb += en.eq(~(o.valid & ~o.ready))
        with m.If(o.valid & o.ready):  # before the set below, so a new result wins
            m.d.sync += o.valid.eq(0)
        with m.If(en & valid):
            m.d.sync += o.valid.eq(1)
            for p, lane in enumerate(lanes):
                m.d.sync += o.payload[p * lane_width : (p + 1) * lane_width].eq(lane)
        return
    new = Signal(len(o.payload), name="result")
    for p, lane in enumerate(lanes):
        m.d.comb += new[p * lane_width : (p + 1) * lane_width].eq(lane)
    full = Signal(name="skid_valid")
    held = Signal(len(o.payload), name="skid_payload", reset_less=True)
    m.d.comb += en.eq(~full)
    arrives = en & valid  # never while full: en is low then
    with m.If(~o.valid | o.ready):  # the output register is free this cycle: the held result goes first
        m.d.sync += [o.valid.eq(full | arrives), o.payload.eq(Mux(full, held, new)), full.eq(0)]
    with m.Elif(arrives):
        m.d.sync += [full.eq(1), held.eq(new)]


def _pairwise(terms: list) -> list:
    return [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + ([terms[-1]] if len(terms) % 2 else [])


def _cut_after(level: int, every: int, first: int) -> bool:
    """The pipeline rule of both trees: a register after level ``first`` and every ``every`` levels from there."""
    return bool(every) and level >= first and (level - first) % every == 0


def _regroup(flat: list, groups: list[list]) -> None:
    """Put ``flat`` back into ``groups`` in place, each group keeping its length (after a cut)."""
    k = 0
    for g in groups:
        g[:] = flat[k : k + len(g)]
        k += len(g)


def adder_trees(trees: list[list], cut: Callable[[list], list] | None = None, every: int = 0) -> list:
    """Sum each list of (signed or unsigned) ``trees`` as a balanced tree of adders (depth log2(n)).

    With ``cut``, the partial sums of all trees pass through ``cut`` (a pipeline register that also
    carries the caller's metadata) after the first level and every ``every`` levels from there; the
    last level is never cut. (The MAC's products; the XNOR popcount is :func:`compressor_trees`.)
    """
    trees = [list(t) for t in trees]
    level = 0
    while any(len(t) > 1 for t in trees):
        trees = [_pairwise(t) for t in trees]
        level += 1
        if cut is not None and _cut_after(level, every, 1) and any(len(t) > 1 for t in trees):
            _regroup(cut([v for t in trees for v in t]), trees)
    return [t[0] for t in trees]


def pipelined(m: Module, en: Value, s: dict, pipeline: bool, build: Callable) -> tuple[list, dict]:
    """``build(cut)`` with :func:`carry` stages as its cuts when ``pipeline`` (else None): (its result, metadata)."""
    n = 0

    def cut(values: list) -> list:
        nonlocal s, n
        s, values = carry(m, en, f"tree{n}", s, values)
        n += 1
        return values

    return build(cut if pipeline else None), s


def tree_cuts(n: int, every: int) -> int:
    """How many pipeline registers :func:`adder_trees` puts into a tree of ``n`` terms."""
    levels = max(n - 1, 0).bit_length()
    return sum(_cut_after(level, every, 1) for level in range(1, levels))


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
    return _cut_after(layer, every, every if first is None else first) and _tall(cols)


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
        _regroup(list(zip(values, masks)), cols)
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
