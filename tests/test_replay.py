"""fxp sim --harness cpp: the Verilator C++ replay harness, its vector files, and the mismatches it must catch."""

import json
import shutil

import numpy as np
import pytest

from fxp import FxpError, fxpm
from fxp.cli import main
from fxp.format import Format
from hdl_gen.gen import random_layer
from sim.lanes import pack_lanes, words_to_ints
from sim.stimulus import block_rows, input_block, vectors

CPP = ["--simulator", "verilator", "--harness", "cpp"]


def _record(folder):
    return json.loads((folder / "sim_verilator_cpp.json").read_text())


@pytest.fixture(scope="module")
def xnor_unit(tmp_path_factory):
    out = tmp_path_factory.mktemp("xnor") / "u"
    assert main(["gen", "unit", "xnor", "--mw", "16", "--mh", "4", "--pe", "2", "--simd", "4", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_pack_lanes_matches_integer_packing(signed):
    rng = np.random.default_rng(1)
    for width in (1, 5, 8, 13, 16, 32):
        lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if signed else (0, 1 << width)
        v = rng.integers(lo, hi, (50, 7))
        ref = [sum((int(x) & ((1 << width) - 1)) << (k * width) for k, x in enumerate(row)) for row in v]
        words = pack_lanes(v, width, signed)
        assert words.shape == (50, -(-7 * width // 32)) and words_to_ints(words) == ref, width


@pytest.mark.parametrize("width,signed,value", [(8, True, 128), (8, True, -129), (8, False, -1), (8, False, 256),
                                                (5, True, 16), (16, True, 1725 << 5), (1, False, 2)])
def test_pack_lanes_refuses_what_a_lane_cannot_hold(width, signed, value):
    v = np.zeros((3, 4), np.int64)
    v[2, 1] = value
    with pytest.raises(FxpError, match=f"{value} \\(vector 2, lane 1\\) does not fit a {width}-bit"):
        pack_lanes(v, width, signed)


@pytest.mark.parametrize("kind,mw,fmt", [("xnor", 13, None), ("mac", 9, "s8.0"), ("mac", 9, "u8.0"), ("mac", 5, "s10.0")])
def test_vector_blocks_regenerate_alone(kind, mw, fmt):
    model = random_layer(kind, mw, 3, seed=1)
    if fmt:  # the MAC unit's input format decides the lanes' range
        model = fxpm.Model(dict(model.spec, input={"shape": [mw], "quantizer": {"kind": "fixed", "format": fmt}},
                                layers=[dict(model.layers[0], input_format=fmt)]), model.arrays)
    lo, hi = (0, 1) if kind == "xnor" else (Format.parse(fmt).raw_min, Format.parse(fmt).raw_max)
    sidecar = {"kind": kind, "mw": mw, "in_lanes": mw, "in_lane_width": 1 if kind == "xnor" else Format.parse(fmt).word_bits,
           "in_lane_signed": kind == "mac" and fmt.startswith("s")}
    rows = block_rows(sidecar)
    x = vectors(sidecar, model, rows + 5, seed=4)
    assert np.array_equal(input_block(sidecar, model, 1, 4)[:5], x[rows:])
    assert (x[0] == lo).all() and (x[1] == hi).all() and x.min() == lo and x.max() == hi
    assert not np.array_equal(vectors(sidecar, model, 20, seed=5), x[:20])


def test_xnor_thresholds_with_gaps_and_backpressure(xnor_unit):
    assert main(["sim", str(xnor_unit), *CPP, "--vectors", "5000"]) == 0
    plain = _record(xnor_unit)
    assert main(["sim", str(xnor_unit), *CPP, "--vectors", "5000", "--gap", "0.3", "--stall", "0.4",
                 "--seed", "3"]) == 0
    rec = _record(xnor_unit)
    assert (rec["mismatches"], rec["missing_outputs"], rec["output_words"]) == (0, 0, 10000)
    assert not rec["rebuilt"] and rec["build_seconds"] == 0  # same Verilog: the first run's build is reused
    assert rec["cycles"] > 1.1 * plain["cycles"]  # the gaps and stalls did happen (about +17% here)
    for key in ("vectors_per_second", "build_seconds", "cycles_per_second", "seconds", "log"):
        assert key in rec


@pytest.mark.parametrize("tables", [[], ["--table-bits", "6"]], ids=["words", "count-tables"])
def test_raw_popcount_lanes_with_dp16kd_weights(tmp_path, tables):
    m = random_layer("xnor", 20, 8, seed=2)
    layer = {k: v for k, v in m.layers[0].items() if k != "threshold"}
    fxpm.save(tmp_path / "pc.fxpm", dict(m.spec, layers=[layer]), {"w": m.arrays["w"]})
    out = tmp_path / "u"
    # weights in the ECP5 block RAM: the harness build compiles the primitive's model from the folder too
    assert main(["gen", "unit", "xnor", "--from", str(tmp_path / "pc.fxpm"), "--layer", "layer", "--pe", "4",
                 "--simd", "5", "--weights-in", "dp16kd", *tables, "--out", str(out)]) == 0
    assert json.loads((out / "fxp_xnor.json").read_text())["out_lane_width"] == 5  # 20-bit words of 4 popcounts
    assert main(["sim", str(out), *CPP, "--vectors", "3000", "--gap", "0.2", "--stall", "0.5"]) == 0
    assert _record(out)["mismatches"] == 0 and _record(out)["output_words"] == 6000


def test_mac_with_a_2048_bit_input_port(tmp_path):
    out = tmp_path / "u"
    assert main(["gen", "unit", "mac", "--mw", "256", "--mh", "4", "--pe", "2", "--simd", "64", "--out", str(out)]) == 0
    assert main(["sim", str(out), *CPP, "--vectors", "2000", "--gap", "0.3", "--stall", "0.3", "--seed", "1"]) == 0
    rec = _record(out)
    assert (rec["mismatches"], rec["output_words"]) == (0, 4000)


def test_wrong_threshold_is_caught_and_named_like_cocotb(xnor_unit, tmp_path, capsys):
    assert main(["sim", str(xnor_unit), *CPP, "--vectors", "10"]) == 0  # its harness is built (or was)
    out = tmp_path / "u"
    shutil.copytree(xnor_unit, out)
    m = fxpm.load(out / "layer.fxpm")
    arrays = dict(m.arrays, t=m.arrays["t"].copy())
    arrays["t"][3] = 0 if arrays["t"][3] else 17  # the golden side now disagrees with the generated Verilog
    fxpm.save(out / "layer.fxpm", m.spec, arrays)
    assert main(["sim", str(out), *CPP, "--vectors", "40", "--gap", "0.3", "--stall", "0.3"]) == 1
    assert "first differing vector:" in capsys.readouterr().out
    rec = _record(out)
    assert not rec["rebuilt"]  # the same Verilog elsewhere: the user's cached build of it
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "40"]) == 1
    ref = json.loads((out / "sim_icarus.json").read_text())
    assert rec["first_mismatch"]["outputs"] == [2, 3]
    assert rec["first_mismatch"] == ref["first_mismatch"] and rec["mismatches"] == ref["mismatches"] > 0


def test_a_unit_that_never_answers_is_reported(xnor_unit, tmp_path):
    out = tmp_path / "u"
    shutil.copytree(xnor_unit, out)
    top = out / "fxp_xnor_top.v"
    text = top.read_text().replace(".o__valid(out_valid)", ".o__valid()")
    # (a comment unique to this run: Verilog never built before, so the harness is built now)
    top.write_text(text.replace("endmodule", f"    assign out_valid = 1'b0;  // {tmp_path}\nendmodule"))
    assert main(["sim", str(out), *CPP, "--vectors", "10"]) == 1
    rec = _record(out)
    assert rec["rebuilt"] and rec["missing_outputs"] == rec["mismatches"] == 20
    assert rec["first_mismatch"]["vector"] == 0 and rec["first_mismatch"]["got_word"] is None


@pytest.mark.parametrize("args", [["--simulator", "icarus", "--harness", "cpp"],
                                  ["--simulator", "verilator", "--harness", "cpp", "--waves"],
                                  ["--simulator", "verilator", "--harness", "cpp", "--gap", "1"]])
def test_bad_harness_requests_exit_2(xnor_unit, args, capsys):
    try:
        rc = main(["sim", str(xnor_unit), *args, "--vectors", "5"])
    except SystemExit as e:  # a value argparse refuses
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("fxp: error:") and len(err.strip().splitlines()) == 1
