"""Boards: an amaranth-boards platform plus a profile whose every key is read, and synthesis that uses them."""

import dataclasses
import json

import pytest
import tomllib

from fxp import FxpError
from fxp.resources import data_dir
from hdl_gen import synth
from hdl_gen.boards import FAMILIES, PROFILE_KEYS, Board, boards, load_board

NAMES = ["arty-a7-35t", "icebreaker", "ulx3s-85f"]
OPEN = ["icebreaker", "ulx3s-85f"]  # the boards with an open bitstream flow (YoWASP nextpnr)


def profile_text(name: str) -> str:
    return (data_dir("boards") / f"{name}.toml").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_profile_loads_on_its_platform(name):
    board = load_board(name)
    platform = type(board.platform)()  # a fresh one: the board's figures are the platform's own
    assert board.name == name and board.amaranth_platform == tomllib.loads(profile_text(name))["amaranth_platform"]
    assert (board.device, board.package, board.default_clk) == (platform.device, platform.package, platform.default_clk)
    assert board.clock_hz == platform.default_clk_frequency and board.clock_mhz == platform.default_clk_frequency / 1e6
    uart = platform.lookup("uart", 0)
    assert board.uart == {sub.name: " ".join(sub.ios[0].names) for sub in uart.ios}
    assert board.family is FAMILIES[str(platform.family).lower()]
    if name not in OPEN:  # Xilinx 7-series: no nextpnr, so no device flag, and said plainly
        assert board.nextpnr_device is None and board.nextpnr_package is None and board.family.nextpnr is None
        assert "no open bitstream flow" in board.no_open_flow and not board.to_json()["open_bitstream_flow"]
        return
    assert board.no_open_flow is None and board.to_json()["open_bitstream_flow"]
    # the flag the profile gives is the one Amaranth itself passes nextpnr for this device
    assert board.nextpnr_device == platform._nextpnr_device_options[platform.device]


def test_shipped_boards():
    found = boards()
    assert sorted(found) == NAMES
    ice, ecp, arty = found["icebreaker"], found["ulx3s-85f"], found["arty-a7-35t"]
    assert (ice.device, ice.clock_mhz, ice.nextpnr_package) == ("iCE40UP5K", 12.0, "sg48")
    assert ice.uart == {"rx": "6", "tx": "9"}
    assert (ecp.device, ecp.clock_mhz, ecp.nextpnr_package) == ("LFE5U-85F", 25.0, "CABGA381")
    assert ice.resources["spram_blocks"] == 4 and ecp.resources["bram_bits"] == 18432
    assert (arty.device, arty.package, arty.clock_mhz, arty.family.name) == ("xc7a35ti", "csg324", 100.0, "xilinx")
    assert arty.uart == {"rx": "A9", "tx": "D10"}
    # the XC7A35T: 20,800 LUT6 (each one LUT4 of the folding's estimates), 90 DSP48E1, 50 RAMB36E1
    assert arty.capacity() == {"lut4": 20_800, "dsp": 90, "bram_bits": 50 * 36 * 1024}
    assert arty.resources["flip_flops"] == 41_600


@pytest.mark.parametrize("name", NAMES)
def test_every_key_of_a_profile_is_read(name):
    profile = tomllib.loads(profile_text(name))
    board = load_board(name)
    shown = board.to_json()
    assert set(profile) == set(board.family.profile_keys) <= set(PROFILE_KEYS)
    for key in board.family.profile_keys:
        assert shown[key] == profile[key], key
    # a family without nextpnr has no nextpnr_device, and a profile that gives one is refused
    assert ("nextpnr_device" in profile) == board.family.open_flow


def without(key: str):
    return lambda text: "\n".join(line for line in text.splitlines() if not line.startswith(key + " "))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("[resources]", 'clock_mhz = 12.0\n\n[resources]'), "unknown key clock_mhz"),
    (lambda t: t + "lut6 = 1\n", "unknown key resources.lut6"),
    (without("synth_opts"), "missing key synth_opts"),
    (without("dsp"), "missing key resources.dsp"),
])
def test_unknown_or_missing_key_is_refused(tmp_path, name, edit, key):
    path = tmp_path / f"{name}.toml"
    path.write_text(edit(profile_text(name)))
    with pytest.raises(FxpError, match=f"board profile {path}: {key}; ") as err:
        Board.from_profile(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ('amaranth_platform = "amaranth_boards.nosuch:Board"', "cannot be loaded"),
    ('amaranth_platform = "fxp.errors:FxpError"', "is not an Amaranth platform class"),
    ('amaranth_platform = "amaranth_boards.tang_nano_9k:TangNano9kPlatform"',
     "is a GW1NR-9C platform; fxp takes iCE40, ECP5 and Xilinx 7-series boards only"),
    ('amaranth_platform = "amaranth_boards.de0nano:DE0NanoPlatform"', "is a platform of another family; fxp takes"),
    ('nextpnr_device = "up5k"', "give nextpnr's flag"),
    ("bram_blocks = -1", r"resources.bram_blocks is -1; give a count"),
    ("description = [", "is not valid TOML"),
])
def test_bad_profile_values_are_one_line(tmp_path, text, message):
    key = text.split(" ")[0]
    lines = [text if line.startswith(key + " ") else line for line in profile_text("icebreaker").splitlines()]
    path = tmp_path / "board.toml"
    path.write_text("\n".join(lines))
    with pytest.raises(FxpError, match=message) as err:
        Board.from_profile(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_unknown_board_names_the_known_ones():
    with pytest.raises(FxpError, match="unknown board 'nosuch'; known boards: arty-a7-35t, icebreaker, ulx3s-85f"):
        load_board("nosuch")


def test_a_xilinx_profile_has_no_nextpnr_device(tmp_path):
    path = tmp_path / "arty.toml"
    path.write_text(profile_text("arty-a7-35t").replace("[resources]", 'nextpnr_device = "--xc7a35t"\n\n[resources]'))
    with pytest.raises(FxpError, match="unknown key nextpnr_device; .*Xilinx 7-series has no nextpnr in fxp"):
        Board.from_profile(path)


@pytest.mark.parametrize("name", OPEN)
def test_synth_uses_the_boards_device_flag_and_package(monkeypatch, tmp_path, name):
    board = dataclasses.replace(load_board(name), nextpnr_device="--flag-of-the-board")
    commands = []

    def run(cmd, cwd, timeout, what):
        commands.append(cmd)
        (cwd / "report.json").write_text(json.dumps({"fmax": {"clk": {"achieved": 99.0}}}))
        return ""

    monkeypatch.setattr(synth, "_tool", lambda tool: tool)
    monkeypatch.setattr(synth, "_run", run)
    monkeypatch.setattr(synth, "_synth", lambda *a: {"lut4": 0, "carry": 0, "ff": 0, "dsp": 0, "bram": 0})
    verilog = "module unit(clk, a, b);\n  input clk;\n  input a;\n  output b;\nendmodule\n"
    out = synth.place_and_route(verilog, "unit", board, workdir=tmp_path)
    (cmd,) = commands
    assert cmd[:4] == [board.family.nextpnr, "--flag-of-the-board", "--package", board.nextpnr_package]
    assert board.family.allow_unconstrained in cmd
    assert out["target_mhz"] == board.clock_mhz  # the platform's clock, when no target is given
