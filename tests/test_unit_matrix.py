"""The configuration matrix of both engines on all three simulators, with gaps and backpressure.

Each case generates a unit folder with ``fxp gen unit`` and replays golden-model vectors through it
with ``fxp sim`` (random gaps on in_valid, random backpressure on out_ready, corner-case vectors first).
CI runs the sample marked below; the benchmark command (``make bench``) runs the whole matrix.
"""

import json

import pytest

from fxp.cli import main
from sim.tools import lint

# (kind, MW, MH, PE, SIMD, options): fully parallel (PE = MH, SIMD = MW), fully folded (PE = SIMD = 1),
# and folds in between, each with and without pipeline registers and block-RAM weights (inferred, or
# ECP5 DP16KD through its output register: Icarus and Verilator with fxp's model of the primitive).
SHAPES = [(16, 8, 8, 16), (16, 8, 1, 1), (64, 16, 4, 16), (48, 6, 3, 8), (96, 4, 2, 32)]
OPTIONS = [[], ["--pipeline"], ["--weights-in", "bram"], ["--weights-in", "bram", "--pipeline"],
           ["--weights-in", "dp16kd", "--pipeline"]]
MATRIX = [(kind, *shape, tuple(opt)) for kind in ("xnor", "mac") for shape in SHAPES for opt in OPTIONS]
# XNOR: the block RAM holds tables of counts instead of weight words (--table-bits); with PE = 1 and
# room for two inputs of each slice, a table reads every slice (48x4: 12 folds, 4 + 2 x 3 address bits)
TABLES = [["--weights-in", "bram", "--table-bits", "9"], ["--weights-in", "bram", "--table-bits", "9", "--pipeline"],
          ["--weights-in", "dp16kd", "--table-bits", "9", "--pipeline"]]
MATRIX += [("xnor", *shape, tuple(opt)) for shape in SHAPES for opt in TABLES]
MATRIX += [("xnor", 64, 8, 2, 16, ("--popcount", "chain")),
           ("xnor", 48, 4, 1, 16, ("--weights-in", "bram", "--table-bits", "10", "--pipeline"))]
SAMPLE = {("xnor", 16, 8, 8, 16, ()), ("xnor", 48, 6, 3, 8, ("--weights-in", "bram", "--pipeline")),
          ("mac", 16, 8, 1, 1, ("--pipeline",)), ("mac", 64, 16, 4, 16, ("--weights-in", "bram")),
          ("xnor", 96, 4, 2, 32, ("--weights-in", "dp16kd", "--pipeline")),
          ("mac", 48, 6, 3, 8, ("--weights-in", "dp16kd", "--pipeline")),
          ("xnor", 64, 16, 4, 16, ("--weights-in", "dp16kd", "--table-bits", "9", "--pipeline")),
          ("xnor", 48, 4, 1, 16, ("--weights-in", "bram", "--table-bits", "10", "--pipeline"))}


def _cases():
    for case in MATRIX:
        marks = [] if case in SAMPLE else [pytest.mark.slow]
        yield pytest.param(*case, marks=marks, id="-".join(str(c) for c in case[:5]) + "".join(case[5]).replace("--", "-"))


@pytest.mark.parametrize("kind,mw,mh,pe,simd,options", list(_cases()))
def test_unit_on_every_simulator(tmp_path, kind, mw, mh, pe, simd, options):
    out = tmp_path / "u"
    assert main(["gen", "unit", kind, "--mw", str(mw), "--mh", str(mh), "--pe", str(pe), "--simd", str(simd),
                 "--seed", str(mw + mh + pe), "--out", str(out), *options]) == 0
    sidecar = json.loads((out / f"fxp_{kind}.json").read_text())
    assert sidecar["options"]["pipeline"] == ("--pipeline" in options)
    tables = options[options.index("--table-bits") + 1] if "--table-bits" in options else None
    assert sidecar["options"].get("table_bits") == (tables and int(tables))  # fxp sim rebuilds the unit from these
    models = [out / name for name in sidecar["sim_models"]]
    assert bool(models) == ("dp16kd" in options)
    rc, messages = lint([out / f"fxp_{kind}.v", *models], f"fxp_{kind}")  # -Wall, only the documented waivers
    assert rc == 0, messages
    for sim in ("icarus", "verilator") if models else ("amaranth", "icarus", "verilator"):
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "40", "--seed", str(pe)]) == 0, sim
        rec = json.loads((out / f"sim_{sim}.json").read_text())
        assert rec["mismatches"] == 0 and rec["output_words"] == 40 * sidecar["out_transfers"]
        if sim != "amaranth":  # the cocotb testbench measures it (Amaranth's: tests/test_hdl_*.py)
            assert rec["latency_cycles"] == sidecar["latency_cycles"], sim
