"""Constant tables a unit reads once per issued slice: weight words, count tables, requantization words.

Where they are held (``weights_in``): ``"logic"``, a table in LUTs read in the same cycle; ``"bram"``,
block RAM that Yosys infers, read a cycle late; ``"dp16kd"``, ECP5 block RAM through its output
register (:mod:`hdl_gen.dp16kd`), two cycles late. :func:`align_to_read` delays the slice beside a
read by as many cycles, so that the two meet.
"""

from __future__ import annotations

from amaranth import Const, Module, Value, unsigned
from amaranth.lib.memory import Memory

from hdl_gen import dp16kd
from hdl_gen.pipeline import Slice, register_slice

READ_LATENCY = {"logic": 0, "bram": 1, "dp16kd": 2}  # where a table is held: the cycles a read takes


def check_capacity(weights_in: str, words: int) -> None:
    """Room for ``words`` words (one per issued slice) where ``weights_in`` says (a DP16KD holds 512)."""
    if weights_in == "dp16kd":
        dp16kd.check_depth(words)


def pack(values, width: int = 1) -> int:
    """``values`` as one ROM word, ``width`` bits each (two's complement), the first the least significant."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    return word


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
    """``words[addr]`` from where ``weights_in`` holds them (see the module docstring); reads advance on ``en``."""
    if weights_in == "logic" or len(words) == 1:
        return rom(m, name, width, words, addr)
    if weights_in == "bram":
        return rom(m, name, width, words, addr, sync_en=en, block_ram=True)
    return dp16kd.rom(m, name, width, words, addr, en)


def align_to_read(m: Module, en: Value, slice_: Slice, values: list, weights_in: str) -> tuple[Slice, list]:
    """The slice (and ``values`` of it), registered as often as a read from ``weights_in`` takes, so that
    it lines up with what :func:`read_rom` returns."""
    for k in range(READ_LATENCY[weights_in]):
        slice_, values = register_slice(m, en, f"fetch{k}" if k else "fetch", slice_, values)
    return slice_, values
