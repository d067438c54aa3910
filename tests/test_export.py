"""Trained models → integer descriptions → the golden model, end to end through the CLI."""

import json

import numpy as np
import pytest

from fxp import fxpm
from fxp.cli import main

CNN = ('input_shape = [1, 8, 8]\n'
       '[[layers]]\ntype = "conv2d"\nout = 4\nkernel = 3\npadding = 1\n[[layers]]\ntype = "relu"\n'
       '[[layers]]\ntype = "maxpool2d"\nkernel = 2\n[[layers]]\ntype = "flatten"\n'
       '[[layers]]\ntype = "linear"\nout = 32\n[[layers]]\ntype = "relu"\n[[layers]]\ntype = "linear"\nout = 10\n')


@pytest.mark.parametrize("mode", ["qat", "fixed"])
def test_int_cnn_export_predict_zero_mismatches(tmp_path, mode):
    spec = tmp_path / "cnn.toml"
    spec.write_text(CNN)
    run, desc = tmp_path / "run", tmp_path / "m.fxpm"
    args = ["train", "--model", str(spec), "--mode", mode, "--epochs", "4", "--rounding", "nearest_up", "--quiet",
            "--out", str(run)]
    if mode == "qat":
        args += ["--act-bits", "8", "--weight-bits", "8"]
    assert main(args) == 0
    assert main(["export", str(run), "--out", str(desc)]) == 0
    m = fxpm.load(desc)
    assert [layer["op"] for layer in m.layers] == ["conv2d", "maxpool2d", "flatten", "dense", "dense"]
    assert m.layers[0]["relu"] and m.layers[3]["relu"] and not m.layers[4]["relu"]
    if mode == "qat":
        assert m.arrays["conv1.weight"].dtype == np.int8
    assert main(["predict", str(desc), "--run", str(run), "--json", str(tmp_path / "p.json")]) == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["integer_mismatches"] == 0 and rec["integer_outputs_compared"] > 100_000
    # with nearest_up rounding and exact accumulation the fake-quantized model IS the integer model
    assert rec["golden_accuracy"] == rec["fake_quantized_accuracy"] > 0.8


def test_bnn_export_predict(tmp_path):
    run, desc = tmp_path / "run", tmp_path / "b.fxpm"
    assert main(["train", "--model", "bnn_digits", "--mode", "qat", "--optimizer", "adam", "--lr", "0.01",
                 "--epochs", "3", "--quiet", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(desc)]) == 0
    m = fxpm.load(desc)
    assert [layer["op"] for layer in m.layers] == ["flatten", "binary_dense", "binary_dense"]
    assert m.spec["input"]["quantizer"] == {"kind": "binarize", "threshold": 0.5}
    assert main(["predict", str(desc), "--run", str(run), "--json", str(tmp_path / "p.json")]) == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["integer_mismatches"] == 0
    assert abs(rec["golden_accuracy"] - rec["fake_quantized_accuracy"]) < 0.01


def test_export_refuses_float_runs_and_missing_runs(tmp_path, capsys):
    assert main(["train", "--mode", "float", "--epochs", "1", "--quiet", "--out", str(tmp_path / "f")]) == 0
    assert main(["export", str(tmp_path / "f"), "--out", str(tmp_path / "f.fxpm"), "--scales", "pow2"]) == 2
    assert "float model has no integer formats" in capsys.readouterr().err
    assert not (tmp_path / "f.fxpm").exists()
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.fxpm")]) == 2
    assert main(["export", str(tmp_path / "f"), "--out", str(tmp_path / "f.fxpm"), "--scales", "pow2",
                 "--weights", "affine"]) == 2


@pytest.mark.parametrize("weights", ["symmetric", "affine"])
def test_per_channel_post_training_export_of_a_float_run(tmp_path, weights):
    """Float run → int8 with per-channel weight scales, affine activations, multiplier+shift requantization."""
    run, desc = tmp_path / "run", tmp_path / "pc.fxpm"
    assert main(["train", "--mode", "float", "--epochs", "5", "--quiet", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(desc), "--calibrate", "500", "--weights", weights]) == 0
    m = fxpm.load(desc)
    wz = m.array(m.layers[1], "weight_zero_point")
    if weights == "affine":  # per-channel zero points that differ, and weights spanning the full int8 range
        assert len(np.unique(wz)) > 1 and m.arrays["fc1.weight"].min() == -128
        assert (m.arrays["fc1.weight"].max(axis=1) == 127).all()
    else:
        assert wz is None
    fc1, fc2 = m.layers[1], m.layers[2]
    assert fc1["output_zero_point"] == -128 and fc2["input_zero_point"] == -128  # ReLU range mapped onto int8
    mult = m.arrays["fc1.multiplier"]
    assert mult.min() >= 2**30 and len(np.unique(mult)) > 1  # 31-bit, per channel
    assert main(["predict", str(desc), "--run", str(run), "--json", str(tmp_path / "p.json")]) == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["integer_mismatches"] == 0
    assert rec["golden_accuracy"] >= rec["fake_quantized_accuracy"] - 0.02  # PTQ int8 stays near float


def test_multiplier_shift_represents_the_factor():
    from fxp.ops.integer_layer import multiplier_shift as _multiplier_shift

    for r in (1.0, 0.5, 3e-5, 0.123456789, 1.9999999999):
        m, s = _multiplier_shift(r)
        assert 2**30 <= m < 2**31 and 0 <= s <= 62
        assert abs(m / 2**s - r) <= r * 2.0**-30
    m, s = _multiplier_shift(2.0**-40)  # past the largest shift: fewer significant bits, same value
    assert s == 62 and m / 2**s == 2.0**-40


def test_export_of_a_run_on_an_idx_folder_from_another_folder(tmp_path, monkeypatch):
    """metrics.json records where the data is (not just its folder's name), and pow2 exports load none."""
    from test_datasets import make_folder

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    make_folder(tmp_path / "a" / "mnist", n_train=40, n_test=10)
    monkeypatch.chdir(tmp_path / "a")  # trained with a relative dataset path
    quick = ["--model", "lenet300", "--dataset", "mnist", "--epochs", "1", "--quiet"]
    assert main(["train", *quick, "--mode", "float", "--out", str(tmp_path / "float")]) == 0
    assert main(["train", *quick, "--mode", "qat", "--out", str(tmp_path / "qat")]) == 0
    assert json.loads((tmp_path / "float" / "metrics.json").read_text())["dataset_source"] == str(tmp_path / "a" / "mnist")
    monkeypatch.chdir(tmp_path / "b")
    assert main(["export", str(tmp_path / "float"), "--out", "f.fxpm", "--calibrate", "20"]) == 0  # per-channel
    (tmp_path / "a" / "mnist" / "train-images-idx3-ubyte.gz").unlink()  # the data is gone: pow2 needs none
    assert main(["export", str(tmp_path / "qat"), "--out", "q.fxpm"]) == 0
    assert fxpm.load("q.fxpm").layers[1]["op"] == "dense"
