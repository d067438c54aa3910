"""Whole-network accelerators (fxp gen model): trained models become one streaming design, bit-exact with
the golden model on test images on every simulator, at the folding's predicted frame rate."""

import json

import numpy as np
import pytest

from fxp import fxpm
from fxp.cli import main
from hdl_gen.folding import FILL, Layer, divisors, fold, fold_to_fit, from_sidecar, from_spec, usage
from hdl_gen.mac import MacUnit
from hdl_gen.network import Network, compute_layers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A binarized and an integer digits model, trained briefly and exported with default options."""
    root = tmp_path_factory.mktemp("models")
    quick = ["--epochs", "2", "--limit-train", "400", "--quiet"]
    assert main(["train", *quick, "--model", "bnn_digits", "--out", str(root / "bnn")]) == 0
    assert main(["train", *quick, "--out", str(root / "mlp")]) == 0
    for name in ("bnn", "mlp"):
        assert main(["export", str(root / name), "--out", str(root / f"{name}.fxpm")]) == 0
    return root


def _record(folder, name):
    return json.loads((folder / name).read_text())


@pytest.mark.parametrize("name,cycles", [("bnn", 16), ("mlp", 32)])
def test_network_is_bit_exact_on_every_simulator(models, tmp_path, name, cycles):
    out = tmp_path / "hw"
    assert main(["gen", "model", str(models / f"{name}.fxpm"), "--cycles", str(cycles), "--out", str(out)]) == 0
    car = _record(out, "fxp_network.json")
    assert car["kind"] == "network" and car["cycles_per_frame"] <= cycles and car["levels"] == 16
    assert "Predicted: one frame every" in (out / "folding.md").read_text()
    for sim in ("amaranth", "icarus", "verilator"):
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "25"]) == 0, sim
        rec = _record(out, f"sim_{sim}.json")
        assert rec["mismatches"] == 0 and rec["images"] == 25
        assert rec["hardware_accuracy"] == rec["golden_accuracy"]
    # the whole test set through the C++ harness, out_ready always high: the predicted frame period
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "100000"]) == 0
    rec = _record(out, "sim_verilator_cpp.json")
    assert rec["images"] == 449 and rec["mismatches"] == 0 and rec["hardware_accuracy"] == rec["golden_accuracy"]
    assert abs(rec["cycles_per_frame_measured"] / car["cycles_per_frame"] - 1) < 0.05
    # and with input gaps and output backpressure: slower, still exact
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "449", "--gap", "0.3",
                 "--stall", "0.3"]) == 0


def test_a_wrong_accelerator_is_caught(models, tmp_path):
    """The golden side changed under a generated network: fxp sim reports the mismatches and exits 1."""
    out = tmp_path / "hw"
    assert main(["gen", "model", str(models / "bnn.fxpm"), "--cycles", "64", "--out", str(out)]) == 0
    m = fxpm.load(out / "model.fxpm")
    arrays = dict(m.arrays)
    key = m.layers[-1]["weights"]
    arrays[key] = m.arrays[key].copy()
    arrays[key][3] ^= 0xFF  # class 3's weights inverted on the golden side only
    fxpm.save(out / "model.fxpm", m.spec, arrays)
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "20"]) == 1  # the Verilog is what was made
    assert _record(out, "sim_icarus.json")["mismatches"] > 0


def test_equal_scores_go_to_the_lowest_class(tmp_path):
    """A last layer whose rows repeat gives equal scores on every image: the class is the lower index."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (4, 64)).astype(np.uint8)
    bits = np.concatenate([bits, bits[::-1]])  # rows 0-3 again as 7-4
    spec = {"format": "fxpm", "version": 1, "name": "ties",
            "input": {"shape": [1, 8, 8], "quantizer": {"kind": "binarize", "threshold": 0.5}},
            "layers": [{"name": "flat", "op": "flatten"},
                       {"name": "scores", "op": "binary_dense", "out_features": 8, "weights": "w"}]}
    fxpm.save(tmp_path / "t.fxpm", spec, {"w": np.packbits(bits, axis=1, bitorder="little")})
    assert main(["gen", "model", str(tmp_path / "t.fxpm"), "--cycles", "8", "--out", str(tmp_path / "hw")]) == 0
    assert main(["sim", str(tmp_path / "hw"), "--simulator", "amaranth", "--vectors", "40"]) == 0
    from sim.network_run import expected_words, images

    car = _record(tmp_path / "hw", "fxp_network.json")
    raw, _, _ = images(car, fxpm.load(tmp_path / "t.fxpm"), "digits", 40)
    _, scores, classes = expected_words(car, fxpm.load(tmp_path / "t.fxpm"), raw)
    assert (classes < 4).all() and (scores[:, :4] == scores[:, 7:3:-1]).all()


def test_folding_takes_the_smallest_array_that_meets_the_target():
    layers = [Layer("a", "xnor", 784, 256, 1), Layer("b", "mac", 256, 10, 9)]
    f = fold(layers, 784, 100)
    assert f.pixels_per_word == 8 and f.input_cycles == 98  # 784 / 8: the smallest divisor meeting 100
    for lf, mw, mh in zip(f.layers, (784, 256), (256, 10)):
        assert mw % lf.simd == 0 and mh % lf.pe == 0 and lf.cycles <= 100
        assert all((mh // pe) * (mw // simd) > 100 for pe in divisors(mh) for simd in divisors(mw)
                   if pe * simd < lf.pe * lf.simd)  # nothing smaller meets it
    assert f.cycles_per_frame == max(98, *(lf.cycles for lf in f.layers))
    with pytest.raises(ValueError, match=r"layer b simd=3 does not divide MW=256; use one of \[1, 2, 4"):
        from_spec({"pixels_per_word": 1, "layers": {"a": {"pe": 1, "simd": 1}, "b": {"pe": 1, "simd": 3}}},
                  layers, 784, "here")
    with pytest.raises(ValueError, match="names layers"):
        from_spec({"layers": {"a": {"pe": 1, "simd": 1}}}, layers, 784, "here")


def test_a_board_folding_is_the_fastest_that_fits():
    """fold_to_fit: within FILL of every resource, and no faster frame period fits; a model that cannot fit
    at any folding names the resource and the layer."""
    layers = [Layer("a", "xnor", 784, 256, 1), Layer("b", "mac", 256, 10, 9)]
    capacity = {"lut4": 5000, "dsp": 8, "bram_bits": 100 * 4096}
    f = fold_to_fit(layers, 784, capacity, "a small device", weights_in="bram")
    used = usage(f, "bram")
    assert all(used[k] <= FILL * capacity[k] for k in capacity)
    for target in range(1, f.cycles_per_frame):
        faster = fold(layers, 784, target)
        if faster.cycles_per_frame < f.cycles_per_frame:
            assert any(usage(faster, "bram")[k] > FILL * capacity[k] for k in capacity), target
    with pytest.raises(ValueError, match=r"does not fit a tiny device at any folding: fully folded it needs "
                                         r"223,744 block RAM bits \(layer a the most\), the device has 4,096"):
        fold_to_fit(layers, 784, {"lut4": 5000, "dsp": 8, "bram_bits": 4096}, "a tiny device", weights_in="bram")
    with pytest.raises(ValueError, match=r"needs 14,024 LUT4 .*weights in block RAM \(--weights-in bram\) free"):
        fold_to_fit(layers, 784, {"lut4": 5000, "dsp": 8, "bram_bits": 4096}, "a tiny device")


CONV = """name = "small-cnn"
input_shape = [1, 8, 8]
[[layers]]
type = "conv2d"
out = 4
kernel = 3
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "maxpool2d"
kernel = 2
[[layers]]
type = "conv2d"
out = 6
kernel = 3
[[layers]]
type = "relu"
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out = 10
"""


def test_a_convolutional_network(tmp_path):
    """Convolutions (padding, stride 1), max-pooling and a dense layer after flatten: sliding windows with
    line buffers, the (H, W, C) stream, the weight columns reordered; bit-exact, at the predicted rate."""
    (tmp_path / "cnn.toml").write_text(CONV)
    assert main(["train", "--model", str(tmp_path / "cnn.toml"), "--epochs", "2", "--limit-train", "400", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "cnn.fxpm")]) == 0
    ops = [x["op"] for x in fxpm.load(tmp_path / "cnn.fxpm").layers]
    assert ops == ["conv2d", "maxpool2d", "conv2d", "flatten", "dense"]
    out = tmp_path / "hw"
    assert main(["gen", "model", str(tmp_path / "cnn.fxpm"), "--out", str(out)]) == 0
    car = _record(out, "fxp_network.json")
    assert car["cycles_per_frame"] == 100  # the first sliding window: the padded 10 x 10 frame, a pixel a cycle
    for sim in ("amaranth", "icarus"):
        assert main(["sim", str(out), "--simulator", sim, "--vectors", "12"]) == 0, sim
    # a convolution is a network's stage, not a unit of its own
    assert main(["gen", "unit", "--from", str(tmp_path / "cnn.fxpm"), "--layer", "conv1", "--out", str(tmp_path / "u")]) == 2
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "1000"]) == 0
    rec = _record(out, "sim_verilator_cpp.json")
    assert rec["images"] == 449 and rec["mismatches"] == 0 and rec["hardware_accuracy"] == rec["golden_accuracy"]
    assert abs(rec["cycles_per_frame_measured"] / car["cycles_per_frame"] - 1) < 0.05


def test_a_binary_convolutional_network(tmp_path):
    """binary_conv2d on the XNOR engine behind a sliding window, max-pooling of bits (an OR), a binary
    dense layer after flatten: bit-exact, at the predicted rate."""
    assert main(["train", "--model", "bcnn_digits", "--epochs", "2", "--limit-train", "400", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b.fxpm")]) == 0
    out = tmp_path / "hw"
    assert main(["gen", "model", str(tmp_path / "b.fxpm"), "--out", str(out)]) == 0
    assert main(["sim", str(out), "--simulator", "icarus", "--vectors", "12"]) == 0
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "1000"]) == 0
    rec = _record(out, "sim_verilator_cpp.json")
    assert rec["mismatches"] == 0 and rec["hardware_accuracy"] == rec["golden_accuracy"]
    assert abs(rec["cycles_per_frame_measured"] / rec["cycles_per_frame_predicted"] - 1) < 0.05


def test_bad_requests_exit_2_and_write_nothing(models, tmp_path, capsys):
    spec = {"format": "fxpm", "version": 1, "name": "pooled",
            "input": {"shape": [1, 8, 8], "quantizer": {"kind": "binarize", "threshold": 0.5}},
            "layers": [{"name": "pool", "op": "maxpool2d", "kernel": 2, "stride": 2}]}
    fxpm.save(tmp_path / "p.fxpm", spec, {})
    big = MacUnit.random_layer(784, 256, 0)  # 784 x 256 int8 weights: 1.8 Mbit against the UP5K's 120 kbit
    fxpm.save(tmp_path / "big.fxpm", big.spec, big.arrays)
    folding = tmp_path / "fold.json"
    folding.write_text(json.dumps({"layers": {"bfc1": {"pe": 3, "simd": 1}, "bfc2": {"pe": 1, "simd": 1}}}))
    cases = [
        (["gen", "model", str(tmp_path / "p.fxpm")], "the model has no compute layer"),
        (["gen", "model", str(models / "bnn.fxpm"), "--folding", str(folding)], "layer bfc1 pe=3 does not divide MH=64"),
        (["gen", "model", str(models / "bnn.fxpm"), "--folding", str(folding), "--cycles", "4"], "each set the folding"),
        (["gen", "model", str(models / "bnn.fxpm"), "--fps", "1e9", "--clock-mhz", "1"], "less than a cycle per frame"),
        (["gen", "model", str(models / "bnn.fxpm"), "--board", "nosuch"], "unknown board 'nosuch'"),
        (["gen", "model", str(tmp_path / "big.fxpm"), "--board", "icebreaker", "--weights-in", "bram"],
         "does not fit iCEBreaker (Lattice iCE40 UP5K) at any folding: fully folded it needs 1,605,632 block RAM "
         "bits (layer layer the most)"),
    ]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "hw")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "hw").exists()
    assert main(["gen", "model", str(models / "bnn.fxpm"), "--cycles", "64", "--out", str(tmp_path / "hw")]) == 0
    assert main(["sim", str(tmp_path / "hw"), "--dataset", "fashion-mnist", "--vectors", "5"]) == 2
    assert "fashion-mnist images have 784 pixels, the accelerator takes 64" in capsys.readouterr().err


def test_a_weight_shared_network_through_its_codebooks(tmp_path):
    """Train, share (3-bit codes), export, generate with --codebook: every layer stores 3-bit indices, and the
    digits test set through the C++ harness matches the golden model."""
    quick = ["--epochs", "1", "--limit-train", "300", "--quiet"]
    assert main(["train", *quick, "--mode", "qat", "--out", str(tmp_path / "run")]) == 0
    assert main(["compress", str(tmp_path / "run"), "--share-bits", "3", "--share-epochs", "1", "--retrain-epochs", "0",
                 "--quiet", "--out", str(tmp_path / "shared")]) == 0
    assert main(["export", str(tmp_path / "shared"), "--out", str(tmp_path / "shared.fxpm")]) == 0
    model = fxpm.load(tmp_path / "shared.fxpm")
    out = tmp_path / "hw"
    assert main(["gen", "model", str(tmp_path / "shared.fxpm"), "--cycles", "32", "--codebook", "--out", str(out)]) == 0
    car = _record(out, "fxp_network.json")
    assert car["options"]["codebook"] is True
    for layer in car["layers"][1:]:  # both layers folded: their weights in memory, as indices
        distinct = len(np.unique(model.op(layer["layer"]).array("weights")))
        assert distinct <= 8 and layer["weight_bits"] == layer["mw"] * layer["mh"] * max(1, (distinct - 1).bit_length())
    # the units the network builds from that sidecar store what the folding counted: indices
    net = Network(model, from_sidecar(car, compute_layers(model, car["options"])), car["levels"], car["options"])
    for layer in car["layers"][1:]:
        unit = net.units[layer["layer"]]
        assert unit.table is not None and layer["weight_bits"] == unit.mw * unit.mh * unit.stored_bits
    assert main(["sim", str(out), "--simulator", "verilator", "--harness", "cpp", "--vectors", "449"]) == 0
    rec = _record(out, "sim_verilator_cpp.json")
    assert rec["images"] == 449 and rec["mismatches"] == 0 and rec["hardware_accuracy"] == rec["golden_accuracy"]
