"""A faster clock than the board's oscillator: the ECP5's EHXPLLL, as the board top's ``sync`` domain.

The board's oscillator (25 MHz on the ULX3S) is far below what a folded network reaches in the
ECP5's fabric. :func:`ecp5_pll` finds the EHXPLLL dividers whose output comes closest to a
requested frequency without exceeding it (a clock above the design's Fmax is no clock at all), in
the ranges of Lattice's ECP5 sysCLOCK guide (TN1263) that nextpnr and ``ecppll`` use: the phase
detector at 3.125..400 MHz, the VCO at 400..800 MHz, the output at 3.125..400 MHz, feedback from
CLKOP. :class:`EcpPll` instantiates it; the board top makes its output the ``sync`` clock, held in
reset until the PLL has locked.

iCE40 boards run from their oscillator: the iCEBreaker's digits BNN does a frame in 16 cycles at
12 MHz, 4,300 times faster than its serial port brings frames, so a PLL would buy nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Elaboratable, Instance, Module, Signal
from amaranth.lib import io

from fxp.errors import FxpError

PFD_MHZ, VCO_MHZ, OUT_MHZ = (3.125, 400.0), (400.0, 800.0), (3.125, 400.0)


@dataclass(frozen=True)
class PllSetting:
    """EHXPLLL dividers and the frequencies they give (Hz)."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    input_hz: float

    @property
    def output_hz(self) -> float:
        return self.input_hz / self.clki_div * self.clkfb_div

    @property
    def vco_hz(self) -> float:
        return self.output_hz * self.clkop_div

    def to_json(self) -> dict:
        return {"primitive": "EHXPLLL", "clki_div": self.clki_div, "clkfb_div": self.clkfb_div,
                "clkop_div": self.clkop_div, "input_hz": self.input_hz, "output_hz": self.output_hz,
                "vco_hz": self.vco_hz}


def ecp5_pll(input_hz: float, want_hz: float) -> PllSetting:
    """The EHXPLLL setting whose output is closest to ``want_hz`` without exceeding it (the smallest
    dividers among equals); a one-line error if no setting reaches the output range."""
    lo, hi = OUT_MHZ[0] * 1e6, OUT_MHZ[1] * 1e6
    if not lo <= want_hz <= hi:
        raise FxpError(f"an ECP5 PLL makes {OUT_MHZ[0]:g}..{OUT_MHZ[1]:g} MHz; ask for a clock in that range "
                       f"(--clock-mhz), not {want_hz / 1e6:g} MHz")
    best = None
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div
        if not PFD_MHZ[0] * 1e6 <= pfd <= PFD_MHZ[1] * 1e6:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if out > want_hz:
                break
            # the VCO nearest the middle of its range, away from the edges where lock is least certain
            fits = [d for d in range(1, 129) if VCO_MHZ[0] * 1e6 <= out * d <= VCO_MHZ[1] * 1e6]
            if fits and (best is None or out > best.output_hz):
                clkop_div = min(fits, key=lambda d: abs(out * d - sum(VCO_MHZ) / 2 * 1e6))
                best = PllSetting(clki_div, clkfb_div, clkop_div, input_hz)
    if best is None:
        raise FxpError(f"no ECP5 PLL setting makes {want_hz / 1e6:g} MHz or less from {input_hz / 1e6:g} MHz; "
                       "ask for another clock (--clock-mhz)")
    return best


class EcpPll(Elaboratable):
    """An EHXPLLL fed by the platform's default clock pin: ``clk`` its output, ``locked`` its lock.

    The output is constrained to its frequency, so nextpnr times the design against it; the parent
    makes ``clk`` its ``sync`` clock and holds ``sync`` in reset until ``locked``.
    """

    def __init__(self, setting: PllSetting) -> None:
        self.setting = setting
        self.clk, self.locked = Signal(name="clk"), Signal(name="locked")

    def elaborate(self, platform) -> Module:
        m = Module()
        s = self.setting
        m.submodules.clk_pin = clk_pin = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{s.input_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{s.output_hz / 1e6:g}",
            # the loop filter's settings every open-toolchain ECP5 design uses (from Project Trellis)
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=s.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=s.clkop_div,
            p_CLKOP_CPHASE=(s.clkop_div - 1) // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=s.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=clk_pin.i, o_CLKOP=self.clk, i_CLKFB=self.clk, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked)
        platform.add_clock_constraint(self.clk, s.output_hz)
        return m


def clock_of(board, want_hz: float | None) -> tuple[float, PllSetting | None]:
    """The board top's clock (Hz) for ``want_hz`` on ``board``, and the PLL that makes it (None: the
    oscillator itself); a one-line error where the board's family has no PLL here."""
    oscillator = board.clock_hz
    if want_hz is None or want_hz == oscillator:
        return oscillator, None
    if board.family.name != "ecp5":
        raise FxpError(f"fxp generates a PLL for ECP5 boards only; the {board.description} runs from its "
                       f"{oscillator / 1e6:g} MHz oscillator: drop --clock-mhz")
    setting = ecp5_pll(oscillator, want_hz)
    return setting.output_hz, setting

