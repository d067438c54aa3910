"""Integer layers that feed binary ones: ``dense`` with thresholds (BatchNorm and sign folded onto the
accumulator), its fold, its golden and PyTorch paths, its export from a trained mixed model, the MAC
unit's threshold outputs with ties in the stimulus, and a mixed network bit-exact on every simulator."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from fxp import fxpm
from fxp.cli import main
from fxp.errors import FxpError
from fxp.mixed import fold_accumulator_threshold
from sim import golden
from sim.stimulus import requantization_ties

MIXED_DIGITS = """
name = "mixed_digits"
input_shape = [1, 8, 8]
layers = [{type = "quantize", format = "u8.8"}, {type = "flatten"}, {type = "linear", out = 32},
          {type = "batchnorm"}, {type = "sign"}, {type = "binary_linear", out = 10}, {type = "scale"}]
"""


def thresholded(mw=12, mh=6, seed=0, bias=True, extra=None):
    """A one-layer dense description with thresholds (bit outputs) on u8.0 input."""
    rng = np.random.default_rng(seed)
    layer = {"name": "fc", "op": "dense", "out_features": mh, "input_format": "u8.0", "weight_format": "s8.0",
             "acc_bits": 32, "input_zero_point": 0, "weights": "w", "threshold": "t", **(extra or {})}
    arrays = {"w": rng.integers(-127, 128, (mh, mw)).astype(np.int8),
              "t": rng.integers(-20000, 20000, mh).astype(np.int64)}
    if bias:
        layer["bias"] = "b"
        arrays["b"] = rng.integers(-3000, 3000, mh).astype(np.int32)
    spec = {"format": "fxpm", "version": 1, "name": "t",
            "input": {"shape": [mw], "quantizer": {"kind": "fixed", "format": "u8.0"}}, "layers": [layer]}
    return fxpm.Model(spec, arrays)


def _bn_sign(acc: int, scale: float, mean, var, eps, gamma, beta) -> int:
    """sign(BN(acc * scale)) in exact arithmetic (1 for +1), sigma as float64 computes it."""
    sigma = Fraction(float(np.sqrt(np.float64(var) + np.float64(eps))))
    z = (Fraction(acc) * Fraction(scale) - Fraction(mean)) / sigma * Fraction(gamma) + Fraction(beta)
    return int(z >= 0)


def test_the_fold_is_exact_at_the_cut():
    """For random BatchNorms (negative and zero scales included) the folded threshold gives sign(BN(acc *
    scale)) on every accumulator around the cut, compared in exact rational arithmetic."""
    rng = np.random.default_rng(5)
    for case in range(300):
        scale = float(rng.uniform(1e-5, 1e-2))
        mean, var, beta = float(rng.normal(0, 3)), float(rng.uniform(0.01, 9)), float(rng.normal(0, 1))
        gamma = 0.0 if case % 50 == 0 else float(rng.normal(0, 1))
        t, negate = fold_accumulator_threshold(scale, mean, var, 1e-5, gamma, beta, -(1 << 31), (1 << 31) - 1)
        centre = int(round(mean / scale))
        for acc in range(centre - 400, centre + 400, 7):
            want = _bn_sign(acc, scale, mean, var, 1e-5, gamma, beta)
            assert int((-acc if negate else acc) >= t) == want, (case, acc)


def test_golden_and_pytorch_agree_and_the_bit_turns_at_the_threshold():
    model = thresholded(seed=1)
    op = model.ops[0]
    assert op.thresholded and op.output.kind == "bits"
    ties = requantization_ties(model, 0, 255)
    x = np.random.default_rng(2).integers(0, 256, (500, 12))
    x[: len(ties)] = ties
    got = op.golden(x.astype(np.int64))
    assert np.array_equal(got, op.torch(torch.from_numpy(x)).numpy())
    acc = x @ model.arrays["w"].astype(np.int64).T + model.arrays["b"]
    assert np.array_equal(got, (acc >= model.arrays["t"]).astype(np.int64))
    assert len(ties) == 6 and all(acc[o, o] == model.arrays["t"][o] for o in range(6))  # each output on its cut


@pytest.mark.parametrize("extra,message", [
    ({"output_format": "s8.0"}, "a layer with thresholds outputs bits; drop output_format"),
    ({"relu": True, "shift": "t"}, "drop relu, shift"),
])
def test_a_thresholded_layer_takes_no_requantization(extra, message):
    with pytest.raises(FxpError, match=message):
        thresholded(extra=extra)


def test_a_requantized_layer_still_needs_every_field():
    model = thresholded()
    spec = json.loads(json.dumps(model.spec))
    layer = spec["layers"][0]
    del layer["threshold"]
    layer.update({"output_format": "s8.0", "relu": False, "output_zero_point": 0, "multiplier": "t"})
    with pytest.raises(FxpError, match="missing field 'shift' \\(or give threshold for bit outputs\\)"):
        fxpm.Model(spec, model.arrays)


def test_a_thresholded_unit_is_bit_exact_with_ties(tmp_path):
    """The MAC unit's threshold outputs on every simulator (the stimulus lands accumulators on the cuts),
    pipelined and not."""
    model = thresholded(mw=16, mh=8, seed=4)
    fxpm.save(tmp_path / "t.fxpm", model.spec, model.arrays)
    for options in ([], ["--pipeline", "--weights-in", "bram"]):
        out = tmp_path / f"u{len(options)}"
        assert main(["gen", "unit", "--from", str(tmp_path / "t.fxpm"), "--layer", "fc", "--pe", "4", "--simd", "4",
                     "--out", str(out), *options]) == 0
        sidecar = json.loads((out / "fxp_mac.json").read_text())
        assert (sidecar["out_lane_width"], sidecar["out_lane_signed"]) == (1, False)
        for sim in ("amaranth", "icarus"):
            assert main(["sim", str(out), "--simulator", sim, "--vectors", "40"]) == 0, sim
        assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "5000"]) == 0


def test_a_mixed_network_trains_exports_and_runs_bit_exact(tmp_path):
    """8-bit pixels, an int8 layer with thresholds, a binary layer: trained, exported (one threshold per
    output), and its accelerator bit-exact on the whole digits test set."""
    (tmp_path / "mixed.toml").write_text(MIXED_DIGITS)
    run, desc, hw = tmp_path / "run", tmp_path / "m.fxpm", tmp_path / "hw"
    assert main(["train", "--model", str(tmp_path / "mixed.toml"), "--mode", "qat", "--optimizer", "adam", "--lr",
                 "0.01", "--epochs", "2", "--limit-train", "600", "--quiet", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(desc)]) == 0
    model = fxpm.load(desc)
    assert [(op.op, op.output.kind) for op in model.ops] == [("flatten", "u8.8"), ("dense", "bits"),
                                                            ("binary_dense", "popcount")]
    assert model.spec["input"]["quantizer"] == {"kind": "fixed", "format": "u8.8"}
    # digits pixels are multiples of 1/16: u8.8 holds them exactly (16 -> 255 saturates)
    assert np.array_equal(model.input.golden(np.arange(17) / 16), np.minimum(np.arange(17) * 16, 255))
    logits = golden.run(model, np.random.default_rng(0).uniform(0, 1, (20, 1, 8, 8)))[-1]
    assert logits.shape == (20, 10) and logits.min() >= 0 and logits.max() <= 32
    assert main(["gen", "model", str(desc), "--cycles", "32", "--out", str(hw)]) == 0
    for sim in ("amaranth", "icarus", "verilator"):
        assert main(["sim", str(hw), "--simulator", sim, "--vectors", "20"]) == 0, sim
    assert main(["sim", str(hw), "--simulator", "verilator", "--harness", "cpp", "--vectors", "100000"]) == 0
    rec = json.loads((hw / "sim_verilator_cpp.json").read_text())
    assert rec["images"] == 449 and rec["mismatches"] == 0 and rec["hardware_accuracy"] == rec["golden_accuracy"]
    assert abs(rec["cycles_per_frame_measured"] / 32 - 1) < 0.05


def test_integer_layers_of_binarized_models_are_checked(tmp_path):
    for layers, message in [
        ('{type = "binarize"}, {type = "flatten"}, {type = "linear", out = 8}', "start with quantize"),
        ('{type = "quantize"}, {type = "flatten"}, {type = "linear", out = 8, bias = true}', "set bias = false"),
        ('{type = "flatten"}, {type = "quantize"}', "make it the first layer"),
        ('{type = "quantize", format = "s20.4"}, {type = "flatten"}', "at most 16 bits"),
    ]:
        (tmp_path / "m.toml").write_text(f'input_shape = [1, 8, 8]\nlayers = [{layers}, '
                                         '{type = "binary_linear", out = 10}, {type = "scale"}]\n')
        assert main(["train", "--model", str(tmp_path / "m.toml"), "--mode", "qat", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "run")]) == 2, layers
        assert not (tmp_path / "run").exists()
    (tmp_path / "m.toml").write_text('input_shape = [1, 8, 8]\nlayers = [{type = "quantize"}, {type = "flatten"}, '
                                     '{type = "linear", out = 16}, {type = "binary_linear", out = 10}]\n')
    assert main(["train", "--model", str(tmp_path / "m.toml"), "--mode", "qat", "--epochs", "1", "--limit-train",
                 "100", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.fxpm")]) == 2  # no batchnorm + sign
    assert not (tmp_path / "m.fxpm").exists()
