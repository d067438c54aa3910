"""The ECP5 PLL in front of a board top: its dividers, and the board folder it goes into."""

import json

import pytest

from fxp.cli import main
from fxp.errors import FxpError
from hdl_gen.boards import load_board
from hdl_gen.pll import OUT_MHZ, PFD_MHZ, VCO_MHZ, clock_of, ecp5_pll


@pytest.mark.parametrize("mhz", [25, 50, 100, 125, 150, 200])
def test_round_clocks_from_25_mhz_are_exact(mhz):
    s = ecp5_pll(25e6, mhz * 1e6)
    assert s.output_hz == mhz * 1e6
    assert abs(s.vco_hz - 600e6) <= 100e6  # the VCO kept near the middle of 400..800 MHz


@pytest.mark.parametrize("want", [3.2e6, 33.3e6, 48e6, 99.9e6, 133e6, 399e6])
def test_a_setting_never_exceeds_the_request_and_stays_in_range(want):
    s = ecp5_pll(25e6, want)
    assert s.output_hz <= want
    assert PFD_MHZ[0] * 1e6 <= 25e6 / s.clki_div <= PFD_MHZ[1] * 1e6
    assert VCO_MHZ[0] * 1e6 <= s.vco_hz <= VCO_MHZ[1] * 1e6
    assert OUT_MHZ[0] * 1e6 <= s.output_hz
    # nothing closer: every output this input can make lies on a grid of 25 MHz / clki_div * clkfb_div
    closer = [25e6 / r * f for r in range(1, 9) for f in range(1, 81)
              if s.output_hz < 25e6 / r * f <= want and 25e6 / r >= PFD_MHZ[0] * 1e6
              and any(VCO_MHZ[0] * 1e6 <= 25e6 / r * f * d <= VCO_MHZ[1] * 1e6 for d in range(1, 129))]
    assert closer == []


def test_refusals():
    with pytest.raises(FxpError, match="an ECP5 PLL makes 3.125..400 MHz"):
        ecp5_pll(25e6, 500e6)
    with pytest.raises(FxpError, match="PLL for ECP5 boards only; the iCEBreaker .* runs from its 12 MHz oscillator"):
        clock_of(load_board("icebreaker"), 48e6)
    assert clock_of(load_board("icebreaker"), None) == (12e6, None)


def test_a_board_folder_with_a_pll(quick_bnn, tmp_path, capsys):
    out = tmp_path / "ulx3s"
    assert main(["gen", "model", str(quick_bnn), "--board", "ulx3s-85f", "--clock-mhz", "100",
                 "--cycles", "16", "--out", str(out)]) == 0
    spec = json.loads((out / "fxp_network.json").read_text())["board"]
    assert spec["clock_hz"] == 100_000_000 and spec["oscillator_hz"] == 25_000_000
    assert spec["pll"]["clkfb_div"] * 25e6 / spec["pll"]["clki_div"] == 100e6
    assert spec["divider"] == 868  # the UART counts the PLL's cycles: 100 MHz / 115200 Bd
    assert 'FREQUENCY NET "pll.clk" 100000000.0 HZ;' in (out / "board" / "top.lpf").read_text()
    assert "EHXPLLL" in (out / "board" / "top.il").read_text()
    readme = (out / "board" / "README.md").read_text()  # the board folder says what it holds and how to use it
    assert "100 MHz from an EHXPLLL" in readme and "openFPGALoader -b ulx3s DIR/board/top.bit" in readme
    # the simulated board top runs at the PLL's clock, so its serial port keeps the same divider
    assert "10'h363" in (out / "fxp_board.v").read_text()  # a bit's 868 cycles counted down from 867
    capsys.readouterr()
    assert main(["gen", "model", str(quick_bnn), "--board", "icebreaker", "--clock-mhz", "48",
                 "--out", str(tmp_path / "ice")]) == 2
    assert "PLL for ECP5 boards only" in capsys.readouterr().err
    assert not (tmp_path / "ice").exists()
