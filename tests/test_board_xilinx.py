"""A Xilinx 7-series board (the Arty A7-35T): Verilog and constraints from amaranth's Vivado plan, no open
bitstream flow (fxp build refuses, saying so), and the top's Verilog linted with exactly the documented
waivers (xilinx_lint.vlt) and the primitives' stubs."""

import json
import re
import subprocess

import pytest

from fxp.cli import main
from fxp.resources import data_dir
from hdl_gen import synth
from hdl_gen.board_build import LINT_STUBS, LINT_WAIVERS
from hdl_gen.boards import load_board
from hdl_gen.folding import fold_to_fit
from hdl_gen.gen import random_layer
from sim.tools import verilator_env

ARTY = "arty-a7-35t"


@pytest.fixture(scope="module")
def arty(quick_bnn, tmp_path_factory):
    """The digits BNN behind the Arty's serial port (folded to 16 cycles: a small top.v, a quick lint)."""
    root = tmp_path_factory.mktemp("arty")
    assert main(["gen", "model", str(quick_bnn), "--board", ARTY, "--cycles", "16", "--out",
                 str(root / "out")]) == 0
    return root / "out"


def lint(board_dir, *files) -> subprocess.CompletedProcess:
    return subprocess.run(["verilator", "--lint-only", "-Wall", *map(str, files), "top.v", "--top-module", "top"],
                          cwd=board_dir, capture_output=True, text=True, env=verilator_env())


def test_the_folder_holds_verilog_and_constraints_for_vivado(arty):
    board = arty / "board"
    assert sorted(p.name for p in board.iterdir()) == sorted(
        ["README.md", "build_top.bat", "build_top.json", "build_top.sh", "top.debug.v", "top.tcl", "top.v", "top.xdc",
         LINT_STUBS, LINT_WAIVERS])
    spec = json.loads((arty / "fxp_network.json").read_text())["board"]
    assert spec == {"name": ARTY, "description": "Arty A7-35T (Xilinx XC7A35T)", "clock_hz": 100_000_000,
                    "oscillator_hz": 100_000_000, "pll": None, "baud": 115200, "divider": 868, "verilog": "fxp_board.v", "top": "fxp_board",
                    "script": "board/build_top.sh", "bitstream": None}
    xdc = (board / "top.xdc").read_text()
    # the platform's UART pins and the 100 MHz oscillator (pin E3), constrained for Vivado
    for port, pin in (("uart_0__rx__io", "A9"), ("uart_0__tx__io", "D10"), ("clk100_0__io", "E3")):
        assert f'set_property LOC {pin} [get_ports "{port}"]' in xdc
    assert 'create_clock -name clk100_0__io -period 10.0 [get_nets "clk100_0__io"]' in xdc
    tcl = (board / "top.tcl").read_text()
    assert "create_project -force -name top -part xc7a35ticsg324-1L" in tcl and "read_xdc top.xdc" in tcl
    assert '"$VIVADO" -mode batch -log top.log -source top.tcl' in (board / "build_top.sh").read_text()
    top = (board / "top.v").read_text()
    assert re.search(r"^module top\(", top, re.M) and 'src = "/' not in top  # source paths made relative
    assert "Yosys" not in tcl and "nextpnr" not in tcl  # amaranth's Vivado plan, no open-flow overrides
    readme = (board / "README.md").read_text()
    assert "No open bitstream flow." in readme and "fxp has no open bitstream flow for Xilinx 7-series" in readme
    assert (arty / "fxp_board.v").is_file()  # the board top alone, for simulation, as on every board


def test_lint_passes_with_exactly_the_documented_waivers(arty):
    board = arty / "board"
    # the shipped files are the templates', and each lint_off line has its reason above it
    assert (board / LINT_WAIVERS).read_text() == (data_dir("templates") / LINT_WAIVERS).read_text()
    assert (board / LINT_STUBS).read_text() == (data_dir("templates") / LINT_STUBS).read_text()
    lines = (board / LINT_WAIVERS).read_text().splitlines()
    waivers = [i for i, line in enumerate(lines) if line.startswith("lint_off")]
    assert [lines[i].split()[2] for i in waivers] == ["PROCASSINIT", "UNUSEDSIGNAL", "DECLFILENAME", "WIDTHEXPAND",
                                                      "CASEINCOMPLETE", "WIDTHTRUNC"]
    assert all(lines[i - 1].startswith("// ") for i in waivers)
    r = lint(board, LINT_WAIVERS, LINT_STUBS)
    assert r.returncode == 0 and "%Warning" not in r.stderr and "%Error" not in r.stderr, r.stderr[-3000:]
    # every waiver is needed: without it, lint fails on its rule
    for i in waivers:
        rule = lines[i].split()[2]
        (board / "fewer.vlt").write_text("\n".join(lines[:i] + lines[i + 1:]) + "\n")
        r = lint(board, "fewer.vlt", LINT_STUBS)
        assert r.returncode != 0 and f"%Warning-{rule}:" in r.stderr, rule
    (board / "fewer.vlt").unlink()
    # without the waivers at all, and without the stubs Verilator has no module for the primitives
    assert lint(board, LINT_STUBS).returncode != 0
    r = lint(board, LINT_WAIVERS)
    assert r.returncode != 0
    assert set(re.findall(r"Cannot find file containing module: '(\w+)'", r.stderr)) == {
        "IBUF", "OBUFT", "BUFGCTRL", "STARTUPE2", "FDPE"}


def test_fxp_build_refuses_plainly_and_writes_nothing(arty, capsys):
    before = {p: p.stat().st_mtime_ns for p in arty.rglob("*")}
    capsys.readouterr()
    assert main(["build", str(arty), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "there is no open bitstream flow for Xilinx 7-series in fxp" in err
    assert "open board/top.v and board/top.xdc in Vivado, or run board/build_top.sh" in err
    assert {p: p.stat().st_mtime_ns for p in arty.rglob("*")} == before


def test_fxp_boards_says_there_is_no_open_flow(capsys):
    capsys.readouterr()
    assert main(["boards"]) == 0
    text = capsys.readouterr().out
    arty_lines = text[text.index(ARTY):text.index("icebreaker")]
    assert "no open bitstream flow in fxp for Xilinx 7-series" in arty_lines and "Vivado" in arty_lines
    assert "nextpnr" not in arty_lines
    assert main(["boards", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)[ARTY]
    assert shown["open_bitstream_flow"] is False and shown["nextpnr"] is None and shown["vendor_tool"] == "Vivado"


def test_an_unknown_board_is_one_line(arty, tmp_path, capsys):
    capsys.readouterr()
    assert main(["gen", "model", str(arty / "model.fxpm"), "--board", "nosuch", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("unknown board 'nosuch'; known boards: arty-a7-35t, icebreaker, ulx3s-85f")
    assert "\n" not in err and not (tmp_path / "x").exists()


def test_board_folding_budgets_a_lut6_as_a_lut4(arty):
    from fxp import fxpm
    from hdl_gen.network import plan

    board = load_board(ARTY)
    stages, layers, fixed = plan(fxpm.load(arty / "model.fxpm"))
    chosen = fold_to_fit(layers, 64, board.capacity(), board.description, fixed, None, "logic")
    used = sum(r["lut4"] for r in chosen.table())
    assert 0 < used <= 0.8 * 20_800


def test_synth_xilinx_counts_the_familys_cells(tmp_path):
    """fxp's own cell counts for the Arty (Yosys synth_xilinx with the profile's options), by the family's names."""
    from hdl_gen.engines import build_unit
    from hdl_gen.verilog import emit

    unit = build_unit(random_layer("xnor", 32, 4, 0), "layer", 1, 8, None)
    stats = synth.synth_stats(emit(unit, "u"), "u", ARTY)
    assert stats["lut4"] > 0 and stats["ff"] > 0 and stats["carry"] > 0
    assert not {"IBUF", "OBUF", "BUFG"} & set(stats["cells"])  # -noiopad -noclkbuf: the unit alone
    # every cell but the slices' wide multiplexers is one the family counts
    family = load_board(ARTY).family
    counted = {c for c in stats["cells"] if any(c.startswith(p) for prefixes in family.cells.values() for p in prefixes)}
    assert set(stats["cells"]) - counted <= {"MUXF7", "MUXF8", "$scopeinfo"}


def test_ecp5_block_ram_primitives_are_refused_for_the_arty(arty, tmp_path, capsys):
    capsys.readouterr()
    assert main(["gen", "model", str(arty / "model.fxpm"), "--board", ARTY, "--cycles", "16", "--weights-in", "dp16kd",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "DP16KD" in err and "use --weights-in bram" in err and not (tmp_path / "x").exists()
