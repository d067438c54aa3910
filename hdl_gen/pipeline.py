"""Pipeline registers and the output stage of the stall-all units.

Every register of a unit advances on one enable, so a result that the consumer does not take freezes
the whole unit and nothing is lost (FINN's MVAU does the same). :class:`OutputStage` makes that
enable. What describes a slice (:class:`Slice`: its output group, first/last, valid) travels beside
its data through the same registers (:func:`register_slice`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from amaranth import Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Slice(NamedTuple):
    """What travels beside a slice's data: its output group, first and last slice of the group, valid."""

    group: Value
    first: Value
    last: Value
    valid: Value


def register(m: Module, en: Value, name: str, value: Value, reset: bool = False) -> Value:
    """``value`` one cycle later, loaded when ``en``; a constant passes as it is.

    Data registers have no reset (``reset``: they do): without one synthesis can fold them into block
    RAM output registers and DSP pipeline registers. A constant (e.g. first/last where nothing is
    folded) stays a constant, so synthesis still sees it.
    """
    value = Value.cast(value)
    if isinstance(value, Const):
        return value
    r = Signal(value.shape(), name=name, reset_less=not reset)
    with m.If(en):
        m.d.sync += r.eq(value)
    return r


def register_slice(m: Module, en: Value, name: str, slice_: Slice, values: list) -> tuple[Slice, list]:
    """One pipeline stage for ``values`` and the slice they belong to: (slice, values), a cycle later."""
    later = Slice(*(register(m, en, f"{name}_{field}", v, reset=field == "valid")
                    for field, v in zip(Slice._fields, slice_)))
    return later, [register(m, en, f"{name}_v{i}", v) for i, v in enumerate(values)]


def pipelined(m: Module, en: Value, slice_: Slice, pipeline: bool, build: Callable) -> tuple[list, Slice]:
    """``build(cut)`` with :func:`register_slice` stages as its cuts when ``pipeline`` (else None):
    (its result, the slice a cycle later per cut)."""
    n = 0

    def cut(values: list) -> list:
        nonlocal slice_, n
        slice_, values = register_slice(m, en, f"tree{n}", slice_, values)
        n += 1
        return values

    return build(cut if pipeline else None), slice_


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


class OutputStage(wiring.Component):
    """The output register of a unit, which makes the enable of everything else.

    Loads ``lanes`` when ``valid`` (and enabled); ``o.valid`` stays until taken. Without ``skid``,
    ``en = ~(o.valid & ~o.ready)``: the consumer's ready reaches, through ``en``, every register of the
    unit and its ``i.ready`` in the same cycle. With ``skid``, a result that arrives while the output
    register is held goes into a skid register, and ``en = ~skid_valid`` comes from a register:
    ``o.ready`` reaches only the output registers (the iCE40's critical path before). The latency is
    the same; the skid costs a register and a 2:1 mux per output bit.

    Members
    -------
    o: ``Out(stream.Signature(payload))`` — the unit's results.
    lanes: ``In(payload)`` — this cycle's result. valid: ``In(1)`` — it is one.
    en: ``Out(1)`` — the unit may advance.
    """

    def __init__(self, payload, skid: bool) -> None:
        self.skid = skid
        super().__init__({"o": Out(stream.Signature(payload)), "lanes": In(payload), "valid": In(1), "en": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        o, en, new = self.o, self.en, Value.cast(self.lanes)
        if not self.skid:
            m.d.comb += en.eq(~(o.valid & ~o.ready))
            with m.If(o.valid & o.ready):  # before the set below, so a new result wins
                m.d.sync += o.valid.eq(0)
            with m.If(en & self.valid):
                m.d.sync += [o.valid.eq(1), o.payload.eq(new)]
            return m
        full = Signal(name="skid_valid")
        held = Signal(len(new), name="skid_payload", reset_less=True)
        m.d.comb += en.eq(~full)
        arrives = en & self.valid  # never while full: en is low then
        with m.If(~o.valid | o.ready):  # the output register is free this cycle: the held result goes first
            m.d.sync += [o.valid.eq(full | arrives), o.payload.eq(Mux(full, held, new)), full.eq(0)]
        with m.Elif(arrives):
            m.d.sync += [full.eq(1), held.eq(new)]
        return m


def cut_after(level: int, every: int, first: int) -> bool:
    """The pipelining rule of the adder trees and the compressor: a register after level ``first`` and
    every ``every`` levels from there."""
    return bool(every) and level >= first and (level - first) % every == 0


def regroup(flat: list, groups: list[list]) -> None:
    """Put ``flat`` back into ``groups`` in place, each group keeping its length (after a cut)."""
    k = 0
    for g in groups:
        g[:] = flat[k : k + len(g)]
        k += len(g)
