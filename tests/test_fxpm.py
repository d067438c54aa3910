"""The integer model description: save/load round trip, and every corruption refused by name."""

import copy
import subprocess
import sys

import numpy as np
import pytest
from descriptions import random_bnn, random_cnn

from fxp import FxpError, fxpm


def test_save_load_round_trip_is_byte_identical(tmp_path):
    m = random_cnn(1, zero_points=True, pow2=False)
    fxpm.save(tmp_path / "a.fxpm", m.spec, m.arrays)
    fxpm.save(tmp_path / "b.fxpm", m.spec, m.arrays)
    for f in ("model.json", "arrays.npz"):
        assert (tmp_path / "a.fxpm" / f).read_bytes() == (tmp_path / "b.fxpm" / f).read_bytes()
    back = fxpm.load(tmp_path / "a.fxpm")
    assert back.spec == m.spec and back.arrays.keys() == m.arrays.keys()
    assert all(np.array_equal(back.arrays[k], m.arrays[k]) and back.arrays[k].dtype == m.arrays[k].dtype for k in m.arrays)


def _broken(edit, base=None):
    m = base or random_cnn(0)
    spec, arrays = copy.deepcopy(m.spec), {k: v.copy() for k, v in m.arrays.items()}
    edit(spec, arrays)
    return spec, arrays


CASES = [
    (lambda s, a: s.update(version=2), r"^version: this fxp reads version 1, the file is version 2"),
    (lambda s, a: s.update(format="onnx"), r"^format: expected 'fxpm'"),
    (lambda s, a: a.pop("conv1.w"), r"layers\[0\] \(conv1\)\.weights: array 'conv1\.w' is not in arrays\.npz"),
    (lambda s, a: a.update({"fc1.b": np.zeros(3, np.int32)}), r"layers\[3\] \(fc1\)\.bias: .* has shape \(3,\), expected \(7,\)"),
    (lambda s, a: a.update({"conv1.w": a["conv1.w"].astype(np.int16) * 3}), r"\(conv1\)\.weights: .* outside -128\.\.127"),
    (lambda s, a: a.update({"fc1.b": a["fc1.b"].astype(np.int64)}), r"\(fc1\)\.bias: array 'fc1\.b' has dtype int64, expected int32"),
    (lambda s, a: a["fc1.m"].__setitem__(0, 0), r"\(fc1\)\.multiplier: .* outside 1\.\.2147483647"),
    (lambda s, a: a["fc1.s"].__setitem__(0, 70), r"\(fc1\)\.shift: .* outside 0\.\.62"),
    (lambda s, a: s["layers"][3].update(input_format="s8.4"), r"\(fc1\)\.input_format: s8\.4 does not match the incoming s8\.3"),
    (lambda s, a: s["layers"][1].update(op="avgpool2d"), r"layers\[1\] \(pool1\)\.op: 'avgpool2d' is not supported"),
    (lambda s, a: s["layers"][0].pop("relu"), r"layers\[0\] \(conv1\): missing field 'relu'"),
    (lambda s, a: s["layers"][0].update(relu="yes"), r"\(conv1\)\.relu: expected bool"),
    (lambda s, a: s["layers"][3].update(acc_bits=16), r"\(fc1\)\.acc_bits: 16 bits can overflow"),
    (lambda s, a: s["layers"][0].update(kernel=30), r"\(conv1\): kernel 30, stride 1, padding 1 do not fit input \[2, 9, 9\]"),
    (lambda s, a: s["layers"][2].update(op="maxpool2d"), r"layers\[2\] \(flat\): missing field 'kernel'"),
    (lambda s, a: s["input"].update(quantizer={"kind": "float"}), r"input\.quantizer\.kind: expected 'fixed' or 'binarize'"),
    (lambda s, a: s["input"].update(shape=[2, 9]), r"input\.shape: expected \[features\] or \[channels, height, width\]"),
    (lambda s, a: s["layers"][3].update(output_zero_point=300), r"\(fc1\)\.output_zero_point: 300 is outside s8\.3"),
    (lambda s, a: s["layers"][1].update(name="conv1"), r"layers\[1\] \(conv1\): duplicate layer name"),
    (lambda s, a: s["layers"].insert(0, {"name": "x", "op": "binary_dense", "out_features": 3, "weights": "conv1.w"}),
     r"layers\[0\] \(x\): binary_dense needs bit input"),
]


@pytest.mark.parametrize("edit,match", CASES)
def test_inconsistent_descriptions_are_refused_by_field(edit, match):
    spec, arrays = _broken(edit)
    with pytest.raises(FxpError, match=match):
        fxpm.Model(spec, arrays)


def test_binary_descriptions_are_checked_too():
    for edit, match in [
        (lambda s, a: a["b0.t"].__setitem__(0, 99), r"\(b0\)\.threshold: .* outside 0\.\.71"),
        (lambda s, a: a.update({"b1.w": np.zeros((20, 4), np.uint8)}), r"\(b1\)\.weights: .* shape \(20, 4\), expected \(20, 5\)"),
        (lambda s, a: s["layers"][1].pop("threshold"), r"layers\[2\] \(b2\): follows a binary_dense layer without threshold"),
        (lambda s, a: s["layers"].append(dict(s["layers"][0], name="extra")), r"layers\[3\] \(extra\): follows"),
    ]:
        spec, arrays = _broken(edit, random_bnn(0))
        with pytest.raises(FxpError, match=match):
            fxpm.Model(spec, arrays)


def test_corrupt_files(tmp_path):
    m = random_cnn(0)
    p = fxpm.save(tmp_path / "m.fxpm", m.spec, m.arrays)
    (p / "arrays.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(FxpError, match=r"arrays\.npz cannot be read"):
        fxpm.load(p)
    (p / "model.json").write_text("{not json")
    with pytest.raises(FxpError, match=r"model\.json is not valid JSON"):
        fxpm.load(p)
    with pytest.raises(FxpError, match="no model.json"):
        fxpm.load(tmp_path / "nothing")


def test_cli_predict_refuses_a_corrupt_description(tmp_path):
    m = random_cnn(0)
    p = fxpm.save(tmp_path / "m.fxpm", m.spec, m.arrays)
    (p / "model.json").write_text((p / "model.json").read_text().replace('"version": 1', '"version": 7'))
    r = subprocess.run([sys.executable, "-m", "fxp.cli", "predict", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "version" in r.stderr
