"""A constant table in ECP5 block RAM (DP16KD), read through the block's output register.

Yosys infers a DP16KD for a synchronous read but never uses its output register (YosysHQ/yosys#5814),
and the read's clock-to-out, 5.6 ns in nextpnr's timing data, holds an ECP5 design to about 138 MHz.
Instantiated with ``REGMODE = "OUTREG"`` the data leave the block 0.97 ns after the clock, one cycle
later. Each block is used as two read ports of 18 bits (x18 mode, 1024 words): port A reads the low
half of a 36-bit slice at address ``k``, port B the high half at ``k + 512``, so a block holds 36 bits
of up to 512 words, as many as Yosys' inferred 36-bit mode.

Simulators need :func:`sim_model` beside the Verilog (Yosys' cell library declares DP16KD with no
behaviour); synthesis for ECP5 needs nothing. The INITVAL layout is Yosys' own
(``share/lattice/brams_map_16kd.v``), which a test checks against Yosys' inference.
"""

from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module, Signal, Value

import fxp
from fxp.errors import FxpError
from fxp.resources import render

WORDS, HALF, BITS = 1024, 512, 18  # x18 mode; each port's share of the words; bits per port
SIM_MODEL = "dp16kd_sim.v"  # the file name of the simulation model in a unit folder


def initvals(words: list[int]) -> dict[str, int]:
    """``INITVAL_00`` .. ``INITVAL_3F`` holding ``words`` (18-bit, at most 1024) from address 0.

    Word ``k`` sits in ``INITVAL_<k // 16>`` at bits ``[20 * (k % 16) +: 18]`` (two padding bits
    per word), as Yosys' ``init_slice`` writes it.
    """
    if len(words) > WORDS or any(not 0 <= w < 1 << BITS for w in words):
        raise FxpError(f"a DP16KD holds at most {WORDS} words of {BITS} bits")
    vals = [0] * 64
    for k, w in enumerate(words):
        vals[k // 16] |= w << (20 * (k % 16))
    return {f"INITVAL_{i:02X}": v for i, v in enumerate(vals)}


def check_depth(words: int) -> None:
    if words > HALF:
        raise FxpError(f"weights_in='dp16kd' holds at most {HALF} words per block and this unit needs {words}; "
                       "fold less (larger PE or SIMD) or use weights_in='bram'")


def rom(m: Module, name: str, width: int, words: list[int], addr: Value, en: Value) -> Value:
    """``words[addr]``, ``width`` bits, two enabled clock edges after ``addr``: block read, output register.

    At most 512 words (both ports read the same address, one in each half of the block); a wider word
    takes ``ceil(width / 36)`` blocks side by side.
    """
    check_depth(len(words))
    blocks = -(-width // (2 * BITS))
    data = Signal(blocks * 2 * BITS, name=f"{name}_data")  # every output pin connected; the top bits unused
    a = Value.cast(addr)
    for b in range(blocks):
        ports, halves = {}, []
        for p, half in (("A", 0), ("B", 1)):
            lo = (2 * b + half) * BITS
            halves.append([(w >> lo) & ((1 << BITS) - 1) for w in words])
            ports.update({f"i_CLK{p}": ClockSignal(), f"i_CE{p}": en, f"i_OCE{p}": en, f"i_WE{p}": Const(0, 1),
                          f"i_RST{p}": Const(0, 1), **{f"i_CS{p}{i}": Const(0, 1) for i in range(3)},
                          **{f"i_DI{p}{i}": Const(0, 1) for i in range(BITS)},
                          **{f"i_AD{p}{i}": Const(0, 1) for i in range(4)},  # byte enables and x9..x1 address bits
                          # the word address: port B's in the upper half of the block
                          **{f"i_AD{p}{4 + i}": (a[i] if i < len(a) else Const(0, 1)) for i in range(9)},
                          f"i_AD{p}13": Const(half, 1), **{f"o_DO{p}{i}": data[lo + i] for i in range(BITS)}})
        init = initvals(halves[0] + [0] * (HALF - len(words)) + halves[1])
        m.submodules[f"{name}{b}"] = Instance(
            "DP16KD", p_DATA_WIDTH_A=BITS, p_DATA_WIDTH_B=BITS, p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
            p_GSR="DISABLED",  # nextpnr's default too; Yosys' declaration says ENABLED
            **{f"p_{k}": Const(v, 320) for k, v in init.items()}, **ports)
    return data[:width]


def sim_model() -> str:
    """The DP16KD simulation model's Verilog, for Icarus and Verilator (never for synthesis)."""
    return render("dp16kd_sim.v.j2", version=fxp.__version__)
