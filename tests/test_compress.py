"""Pruning: masks, retraining with masks held, the regularizers' gradients, dead-neuron removal (exact in the
integer model), and fxp compress end to end on the digits."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fxp import fxpm
from fxp.compress import neurons, regularizers
from fxp.compress.pipeline import PruneOptions, compress
from fxp.compress.prune import (
    Pruner,
    gradual,
    kept,
    prunable,
    sparsity_masks,
    threshold_masks,
)
from fxp.datasets import load
from fxp.errors import FxpError
from fxp.export import export, export_fixed
from fxp.layers import FxConfig
from fxp.models import build
from fxp.train import Recipe, fit, load_checkpoint, run_train
from sim import golden

# a small CNN on the 8x8 digits: conv → pool → conv → flatten → two linear layers, every link kind
SMALL_CNN = {"name": "small_cnn", "input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "out": 6, "kernel": 3, "padding": 1}, {"type": "relu"}, {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "out": 8, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 10}]}
QUICK = Recipe(epochs=1, batch_size=32, lr=0.05, weight_decay=1e-3, limit_train=256)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_sparsity_masks_keep_exactly_the_largest():
    model = build("digits_mlp", FxConfig(mode="float"), seed=3)
    masks = sparsity_masks(model, {"fc1": 0.75})
    w = model.fc1.weight.detach().abs()
    assert int(masks["fc1"].sum()) == w.numel() // 4 and bool(masks["fc2"].all())
    assert float(w[masks["fc1"]].min()) >= float(w[~masks["fc1"]].max())
    # global: one threshold across layers
    g = sparsity_masks(model, 0.9, "global")
    all_w = torch.cat([m.weight.detach().abs().flatten() for m in prunable(model).values()])
    kept_w = torch.cat([m.weight.detach().abs()[g[n]] for n, m in prunable(model).items()])
    assert kept_w.numel() == round(all_w.numel() * 0.1) and float(kept_w.min()) >= float(all_w.kthvalue(
        all_w.numel() - kept_w.numel()).values)


def test_threshold_rule_is_quality_times_std_of_the_remaining_weights():
    model = build("digits_mlp", FxConfig(mode="float"), seed=1)
    with torch.no_grad():
        model.fc2.weight.copy_(torch.arange(640, dtype=torch.float32).view(10, 64) - 319.5)
    masks = threshold_masks(model, {"fc2": 0.5})
    w = model.fc2.weight.detach()
    assert torch.equal(masks["fc2"], w.abs() > 0.5 * float(w.std()))
    with torch.no_grad():  # zeros already there stay dropped, and the std is of the rest
        w[0] = 0
    again = threshold_masks(model, {"fc2": 0.5})
    assert not again["fc2"][0].any()
    assert torch.equal(again["fc2"][1:], w[1:].abs() > 0.5 * float(w[1:].std()))


def test_gradual_schedule_ends_at_the_target_and_rises():
    at = gradual(0.9, 5, 0.5)
    values = [at(e) for e in range(5)]
    assert values[-1] == pytest.approx(0.9) and values == sorted(values) and values[0] > 0.5


@pytest.mark.parametrize("mode", ["float", "qat", "fixed"])
def test_pruned_weights_stay_exactly_zero_through_retraining(digits, mode):
    cfg = FxConfig(mode=mode)
    model = build("digits_mlp", cfg, seed=0)
    masks = sparsity_masks(model, 0.8)
    pruner = Pruner(model, masks)
    before = {n: m.weight.detach().clone() for n, m in prunable(model).items()}
    fit(model, digits, cfg, replace(QUICK, momentum=0.9), progress=False, pruner=pruner)
    pruner.remove()
    for n, m in prunable(model).items():
        w = m.weight.detach()
        assert (w[~masks[n]] == 0).all(), f"{n}: a pruned weight moved"
        assert not torch.equal(w[masks[n]], before[n][masks[n]]), f"{n}: the kept weights did not train"


def test_without_the_masks_pruned_weights_revive(digits):
    """The control for the test above: zeros alone do not stay zero."""
    cfg = FxConfig(mode="float")
    model = build("digits_mlp", cfg, seed=0)
    masks = sparsity_masks(model, 0.8)
    Pruner(model, masks).remove()  # applies the masks once, then lets go
    fit(model, digits, cfg, QUICK, progress=False)
    assert (model.fc1.weight.detach()[~masks["fc1"]] != 0).any()


def test_regularizer_gradients_match_their_formulas():
    model = build(SMALL_CNN, FxConfig(mode="float"), seed=0)
    layers = prunable(model)
    with torch.no_grad():
        model.conv1.weight[2] = 0  # a group at zero: its subgradient is 0
        model.conv1.bias[2] = 0
    g_l1 = torch.autograd.grad(regularizers.l1(model), [m.weight for m in layers.values()])
    for (n, m), g in zip(layers.items(), g_l1, strict=True):
        assert torch.equal(g, torch.sign(m.weight.detach())), n
    # group_in: d/dw of sum_j ||(w_j, b_j)|| is (w_j, b_j) / ||(w_j, b_j)||
    producers = [p for ln in neurons.links(model) for p in (layers[ln.producer].weight, layers[ln.producer].bias)]
    g_in = dict(zip([id(p) for p in producers], torch.autograd.grad(regularizers.group_in(model), producers),
                    strict=True))
    for ln in neurons.links(model):
        m = layers[ln.producer]
        rows = torch.cat([m.weight.detach().flatten(1), m.bias.detach()[:, None]], 1)
        norm = rows.norm(dim=1, keepdim=True)
        want = torch.where(norm > 0, rows / norm.clamp_min(1e-30), torch.zeros_like(rows))
        got = torch.cat([g_in[id(m.weight)].flatten(1), g_in[id(m.bias)][:, None]], 1)
        torch.testing.assert_close(got, want)
    # group_out: each hidden neuron's outgoing weights, by hand for the three link kinds
    g_out = torch.autograd.grad(regularizers.group_out(model), [m.weight for m in list(layers.values())[1:]])
    g_out = [None, *g_out]
    w2, w3, w4 = (m.weight.detach() for m in list(layers.values())[1:])
    by_channel = w2 / w2.pow(2).sum(dim=(0, 2, 3), keepdim=True).sqrt()  # conv1's channel j: conv2's input channel j
    torch.testing.assert_close(g_out[1], by_channel)
    span = w3.shape[1] // 8  # conv2's channel j: a block of h*w columns of fc1
    blocks = w3.view(16, 8, span)
    torch.testing.assert_close(g_out[2], (blocks / blocks.pow(2).sum(dim=(0, 2), keepdim=True).sqrt()).view_as(w3))
    torch.testing.assert_close(g_out[3], w4 / w4.norm(dim=0, keepdim=True))


def _kill(model, layer: str, which: list[int], side: str) -> None:
    layers = prunable(model)
    ln = next(x for x in neurons.links(model) if x.producer == layer)
    dead = torch.zeros(layers[layer].weight.shape[0], dtype=torch.bool)
    dead[which] = True
    with torch.no_grad():
        if side == "in":
            layers[layer].weight[dead] = 0
            layers[layer].bias[dead] = 0
        else:
            layers[ln.consumer].weight[:, neurons._columns(ln, dead)] = 0


def test_removing_dead_neurons_leaves_the_integer_outputs_unchanged(digits):
    cfg = FxConfig(mode="qat", rounding="nearest_up")
    model = build(SMALL_CNN, cfg, seed=0)
    fit(model, digits, cfg, replace(QUICK, limit_train=512), progress=False)
    _kill(model, "conv1", [0, 4], "in")   # conv channels: filter and bias zero
    _kill(model, "conv2", [1], "out")     # a channel nothing reads (its block of fc1's columns is zero)
    _kill(model, "fc1", [3, 5, 11], "in")
    model.eval()
    model.config = cfg
    smaller, counts = neurons.remove_dead(model)
    assert counts == {"conv1": {"before": 6, "after": 4}, "conv2": {"before": 8, "after": 7},
                      "fc1": {"before": 16, "after": 13}}
    assert [layer.get("out") for layer in smaller.spec["layers"] if "out" in layer] == [4, 7, 13, 10]
    x = digits.x_test.numpy()
    big = fxpm.Model(*export_fixed(model, "big"))
    small = fxpm.Model(*export_fixed(smaller, "small"))
    assert small.arrays["fc1.weight"].shape == (13, 7 * 2 * 2)  # 7 channels of 2x2 after conv2
    out_big, out_small = golden.run(big, x)[-1], golden.run(small, x)[-1]
    assert out_big.dtype.kind == "i" and np.array_equal(out_big, out_small)
    assert sum(a.size for a in small.arrays.values()) < sum(a.size for a in big.arrays.values())
    # the control: removing a live neuron changes outputs
    with torch.no_grad():
        model.fc1.weight[0] = 0
        model.fc1.bias[0] = 0
    changed = fxpm.Model(*export_fixed(neurons.remove_dead(model)[0], "c"))
    assert not np.array_equal(golden.run(changed, x)[-1], out_big)


def test_neuron_pruning_refuses_what_it_cannot_remove():
    bnn = build("bnn_digits", FxConfig(mode="qat"), seed=0)
    with pytest.raises(FxpError, match="binarized model's weights are ±1"):
        prunable(bnn)
    model = build("digits_mlp", FxConfig(mode="float"), seed=0)
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc1.bias.zero_()
    with pytest.raises(FxpError, match="every neuron of fc1 is dead"):
        neurons.remove_dead(model)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    run = tmp_path_factory.mktemp("compress") / "run"
    cfg = FxConfig(mode="qat", rounding="nearest_up")
    run_train("digits_mlp", digits, cfg, Recipe(epochs=4, batch_size=32, group_in=1e-2, group_out=1e-2), run, baseline=True,
              progress=False)
    return run


def test_compress_end_to_end(trained, tmp_path):
    out = tmp_path / "pruned"
    rec = compress(trained, out, PruneOptions(sparsity={"fc1": 0.9, "fc2": 0.6}, stages=2, retrain_epochs=1,
                                              neuron_threshold=0.01), progress=False)
    s = rec["summary"]
    fc1, fc2 = rec["layers"]
    assert fc1["neurons_after"] < 64 and fc1["shape_after"][0] == fc1["neurons_after"]
    assert fc2["shape_after"] == [10, fc1["neurons_after"]]
    assert fc1["kept"] <= round(0.1 * 64 * 64) and s["weights_kept"] == fc1["kept"] + fc2["kept"]
    assert s["compression_rate"] == pytest.approx(s["weights"] / s["weights_kept"])
    assert s["sparse_bytes"] < s["dense_bytes"] and s["float_baseline_accuracy"] is not None
    assert [st["step"] for st in rec["steps"]][:3] == ["reference", "neurons removed", "round 1/2: pruned"]
    for name in ("checkpoint.pt", "metrics.json", "report.md", "report.json", "params.png", "weights.png",
                 "accuracy_vs_sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(rec))
    md = (out / "report.md").read_text()
    assert "| fc1 | 64×64 → " in md and f"{s['compression_rate']:.1f}×" in md
    # the compressed run is a run: it exports, with the smaller layer and its zeros
    model = export(out, tmp_path / "m.fxpm")
    w = model.arrays["fc1.weight"]
    assert w.shape == (fc1["neurons_after"], 64) and int(np.count_nonzero(w)) <= fc1["kept"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == s["accuracy"] and metrics["compressed_from"] == str(trained)


def test_compress_is_deterministic(trained, tmp_path):
    opts = PruneOptions(sparsity=0.7, retrain_epochs=1, dynamic=True)
    a = compress(trained, tmp_path / "a", opts, progress=False)
    b = compress(trained, tmp_path / "b", opts, progress=False)
    assert a["summary"] == b["summary"] and a["steps"] == b["steps"]
    assert (tmp_path / "a" / "report.md").read_text().replace("/a", "/b") == (tmp_path / "b" / "report.md").read_text().replace("/a", "/b")


def test_a_failed_compress_leaves_the_output_alone(trained, tmp_path):
    out = tmp_path / "out"
    compress(trained, out, PruneOptions(sparsity=0.5, retrain_epochs=0), progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FxpError, match="already holds a run"):
        compress(trained, out, PruneOptions(sparsity=0.9, retrain_epochs=0), progress=False)
    with pytest.raises(FxpError, match="layer 'fc7' does not exist"):
        compress(trained, out, PruneOptions(sparsity={"fc7": 0.5}), progress=False, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_masks_of_a_pruned_model_are_its_zeros(trained):
    model = load_checkpoint(trained / "checkpoint.pt")
    masks = sparsity_masks(model, 0.5)
    Pruner(model, masks).remove()
    assert all(torch.equal(kept(model)[n], masks[n]) for n in masks)


MLP3 = {"name": "mlp3", "input_shape": [1, 8, 8], "layers": [
    {"type": "flatten"}, {"type": "linear", "out": 24}, {"type": "relu"}, {"type": "linear", "out": 16},
    {"type": "relu"}, {"type": "linear", "out": 10}]}


def test_tsrelu_is_relu_at_d_1_identity_at_d_0_and_gates_neurons():
    from fxp.compress.tsrelu import TsReLU

    g = TsReLU(4, FxConfig(mode="float"))
    x = torch.tensor([[-2.0, -1.0, 1.0, 3.0]])
    with torch.no_grad():
        g.gates.copy_(torch.tensor([1.0, 0.5, 0.0, 1.0]))
    assert torch.equal(g(x), torch.tensor([[0.0, 0.0, 0.0, 3.0]]))
    with torch.no_grad():
        g.depth.fill_(0.0)
    assert torch.equal(g(x), torch.tensor([[-2.0, -0.5, 0.0, 3.0]]))


def test_tsrelu_penalty_gradients_match_their_formulas():
    from fxp.compress.tsrelu import binarizing, depth_l1, gate_l1, gated

    model = build(MLP3 | {"layers": [dict(la, type="tsrelu") if la["type"] == "relu" else la
                                     for la in MLP3["layers"]]}, FxConfig(mode="float"))
    gates = [p for _, m in gated(model) for p in (m.gates, m.depth)]
    with torch.no_grad():
        for p in gates:
            p.copy_(torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    for got, p in zip(torch.autograd.grad(binarizing(model), gates), gates, strict=True):
        torch.testing.assert_close(got, 1 - 2 * p.detach())
    for pull, neuron_gates in ((gate_l1, True), (depth_l1, False)):
        for got, p in zip(torch.autograd.grad(pull(model), gates, allow_unused=True), gates, strict=True):
            want = torch.ones_like(p) if (p.dim() == 1) == neuron_gates else None
            assert (got is None and want is None) or torch.equal(got, want)


def test_learned_architecture_removes_gated_neurons_and_merges_linear_layers():
    from fxp.compress.architecture import learned_architecture
    from fxp.compress.tsrelu import gated

    model = build(MLP3 | {"layers": [dict(la, type="tsrelu") if la["type"] == "relu" else la
                                     for la in MLP3["layers"]]}, FxConfig(mode="float"), seed=2)
    (_, g1), (_, g2) = gated(model)
    with torch.no_grad():
        g1.gates.copy_(torch.linspace(0.1, 0.9, 24))  # 0.1 .. 0.9: 12 below 0.5 (removed), 12 kept and folded
        g2.depth.fill_(0.0)  # fc2 linear: merged into fc3
    model.eval()
    x = torch.randn(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g1.gates[g1.gates < 0.5] = 0  # what the threshold does to them; the kept gates stay as they are
        want = model(x)
        g1.gates.copy_(torch.linspace(0.1, 0.9, 24))
    plain, record, merged, renamed = learned_architecture(model)
    assert merged == ["fc2+fc3"] and renamed == {"fc1": "fc1", "fc2": None, "fc3": "fc2"}
    assert [r["kept"] for r in record] == [12, 16] and [r["nonlinear"] for r in record] == [True, False]
    assert [type(m).__name__ for m in plain] == ["FxQuant", "FxFlatten", "FxLinear", "FxReLU", "FxLinear"]
    assert plain.fc1.weight.shape == (12, 64) and plain.fc2.weight.shape == (10, 12)
    torch.testing.assert_close(plain(x), want, rtol=1e-5, atol=1e-5)


def test_compress_reads_the_architecture_of_a_gated_run(tmp_path, digits):
    run = tmp_path / "run"
    run_train(MLP3, digits, FxConfig(mode="qat"), Recipe(epochs=3, tsrelu=0.05, gate_l1=0.05, depth_l1=0.05), run, progress=False)
    with pytest.raises(FxpError, match="has tsReLU gates; give --architecture"):
        compress(run, tmp_path / "x", PruneOptions(sparsity=0.5), progress=False)
    rec = compress(run, tmp_path / "c", PruneOptions(architecture=True, retrain_epochs=1), progress=False)
    arch = rec["architecture"]
    assert arch["before"] == ["fc 24", "fc 16", "fc 10"] and len(arch["layers"]) < 3  # merged at this strength
    export(tmp_path / "c", tmp_path / "m.fxpm")  # a plain model: it exports
    assert "Learned architecture" in (tmp_path / "c" / "report.md").read_text()
    with pytest.raises(FxpError, match="no tsReLU gates to read"):
        compress(tmp_path / "c", tmp_path / "y", PruneOptions(architecture=True), progress=False)
    with pytest.raises(FxpError, match="has learned its tsReLU gates already"):
        compress(run, tmp_path / "y", PruneOptions(architecture=True, gate_l1=0.1), progress=False)
    with pytest.raises(FxpError, match="tsReLU gates train in float or qat mode"):
        run_train(MLP3, digits, FxConfig(mode="fixed"), Recipe(epochs=1, tsrelu=0.1), tmp_path / "z", progress=False)


def test_compress_learns_gates_on_a_trained_run(tmp_path, digits):
    """Gates added open to a trained run compute the same function, then learn; chained linear layers merge."""
    run = tmp_path / "run"
    run_train(MLP3, digits, FxConfig(mode="qat"), Recipe(epochs=3), run, progress=False)
    rec = compress(run, tmp_path / "c", PruneOptions(architecture=True, tsrelu=0.01, gate_l1=0.05, depth_l1=0.05, gate_epochs=3,
                                                     retrain_epochs=1), progress=False)
    steps = [s["step"] for s in rec["steps"]]
    assert steps[:3] == ["reference", "tsReLU gates learned", "architecture read from the gates"]
    arch = rec["architecture"]
    assert arch["merged"] == ["fc1+fc2", "fc2+fc3"] and arch["layers"] == ["fc 10"]  # both nonlinearities off
    assert [la["layer"] for la in rec["layers"]] == ["fc1", "fc2", "fc3 (now fc1)"]
    merged = rec["layers"][2]  # 10x64 weights stand for fc1, fc2 and fc3 together
    assert merged["kept_percent"] == pytest.approx(100 * 640 / (24 * 64 + 16 * 24 + 10 * 16))
    plain = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    assert fxpm.Model(*export_fixed(plain, "m")).arrays["fc1.weight"].shape == (10, 64)
    with pytest.raises(FxpError, match="fixed mode does not train"):
        fixed = tmp_path / "fixed"
        run_train(MLP3, digits, FxConfig(mode="fixed"), Recipe(epochs=1, limit_train=64), fixed, progress=False)
        compress(fixed, tmp_path / "d", PruneOptions(architecture=True, tsrelu=0.01), progress=False)


def test_sharer_moves_each_centroid_by_its_members_summed_gradient(digits):
    """Plain SGD: one step moves centroid j by -lr x the sum of its members' gradients (Deep Compression eq. 3),
    the weights stay tied to the codebook and the pruned ones at zero."""
    from fxp.compress.sharing import Sharer, share_weights

    cfg = FxConfig(mode="float")
    model = build("digits_mlp", cfg, seed=0)
    Pruner(model, sparsity_masks(model, {"fc1": 0.5})).remove()
    w = model.fc1.weight
    shared = {"fc1": share_weights(w.detach(), 7, mask=w.detach() != 0)}
    sharer = Sharer(model, shared)
    before = sharer.shared["fc1"].codebook.clone()
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = digits.x_train[:64], digits.y_train[:64]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    s = sharer.shared["fc1"]
    grad = w.grad.double()
    want = before.double() - lr * torch.zeros(7, dtype=torch.float64).index_add_(0, s.index[s.mask], grad[s.mask])
    opt.step()
    sharer.after_step()
    sharer.remove()
    torch.testing.assert_close(s.codebook.double(), want, rtol=0, atol=1e-6)
    assert torch.equal(w.detach(), s.dense()) and (w.detach()[~s.mask] == 0).all()
    assert len(torch.unique(w.detach()[s.mask])) <= 7


def test_compress_shares_and_huffman_codes(trained, tmp_path):
    from fxp.compress.huffman import HuffmanCode
    from fxp.compress.sparse import SparseMatrix

    rec = compress(trained, tmp_path / "c", PruneOptions(sparsity=0.8, retrain_epochs=1, share_bits={"fc1": 4},
                                                         share_epochs=1, huffman=True), progress=False)
    s = rec["summary"]
    assert [st["step"] for st in rec["steps"]][-2:] == ["weights shared (k-means)", "centroids trained"]
    assert s["float32_bytes"] == 4 * s["weights"] and s["final_bytes"] == s["huffman_bytes"]
    assert s["huffman_bytes"] <= s["shared_bytes"] < s["sparse_bytes"] < s["dense_bytes"]
    fc1, fc2 = rec["layers"]
    assert fc1["share_bits"] == 4 and fc1["centroids"] == 15 and fc2["share_bits"] is None
    assert fc2["shared_bytes"] == fc2["huffman_bytes"] == fc2["sparse_bytes"]  # not shared: as pruned
    assert fc2["kept"] == 128  # and its zeros held while fc1's centroids trained (80 % of 640 pruned)
    # the model holds at most 15 distinct nonzero values in fc1, and the bytes are those of its codes
    model = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    w = model.fc1.weight.detach()
    values = torch.unique(w[w != 0])
    assert len(values) <= 15
    codes = np.where(w.numpy() != 0, np.searchsorted(values.numpy(), w.numpy()) + 1, 0)
    best = min(SparseMatrix.encode(codes, b).nbytes(4) for b in range(1, 9))
    assert fc1["shared_bytes"] == best + 15  # + the codebook, 8 bits a centroid
    huff = min(HuffmanCode.fit(m.values).nbytes(m.values) + HuffmanCode.fit(m.gaps).nbytes(m.gaps)
               + -(-m.pointer_storage_bits // 8) for m in (SparseMatrix.encode(codes, b) for b in range(1, 9)))
    assert fc1["huffman_bytes"] == min(huff + 15, fc1["shared_bytes"])
    assert "Huffman-coded" in (tmp_path / "c" / "report.md").read_text()
    for plot in ("bytes.png", "codebooks.png", "accuracy_vs_bits.png"):
        assert (tmp_path / "c" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    with pytest.raises(FxpError, match="give --share-bits too"):
        compress(trained, tmp_path / "d", PruneOptions(sparsity=0.5, huffman=True), progress=False)


def test_the_compressed_weights_file_reloads_to_identical_weights(trained, tmp_path):
    from fxp.compress.packed import load_packed

    compress(trained, tmp_path / "c", PruneOptions(sparsity={"fc1": 0.8}, retrain_epochs=0, share_bits={"fc1": 3},
                                                   share_epochs=1, huffman=True), progress=False)
    model = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    weights = load_packed(tmp_path / "c" / "weights.fxpz")
    assert set(weights) == {"fc1", "fc2"}
    for name, m in prunable(model).items():
        assert torch.equal(weights[name], m.weight.detach()), name
    # shared dense (no zeros in fc2 once shared without pruning) reloads too
    compress(trained, tmp_path / "d", PruneOptions(share_bits=2, share_epochs=0, retrain_epochs=0), progress=False)
    again = load_packed(tmp_path / "d" / "weights.fxpz")
    dense = load_checkpoint(tmp_path / "d" / "checkpoint.pt")
    assert all(torch.equal(again[n], m.weight.detach()) for n, m in prunable(dense).items())
    assert len(torch.unique(again["fc2"])) <= 4
    raw = (tmp_path / "c" / "weights.fxpz").read_bytes()
    (tmp_path / "bad.fxpz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FxpError, match="not a weights file written by fxp compress"):
        load_packed(tmp_path / "bad.fxpz")


def test_binary_regularizer_trains_latent_weights_and_rounds_them(digits):
    from fxp.compress.regularizers import binary

    model = build("bnn_digits", FxConfig(mode="qat"), seed=0)
    ws = [m.weight for m in model.modules() if hasattr(m, "latent")]
    for got, w in zip(torch.autograd.grad(binary(model), ws), ws, strict=True):
        torch.testing.assert_close(got, 2 * w.detach() - 4 * w.detach() ** 3)
    from fxp.train import train_model

    trained, hist = train_model("bnn_digits", digits, FxConfig(mode="qat"),
                                Recipe(epochs=2, batch_size=64, optimizer="adam", lr=0.01, binary=1e-3),
                                progress=False)
    assert "test_accuracy_latent" in hist[-1]  # trained on the latent weights, then rounded to ±1
    assert not any(m.latent for m in trained.modules() if hasattr(m, "latent"))
    x = digits.x_test[:20]
    w = trained.bfc1.weight.detach()
    ref = torch.nn.functional.linear(trained.binarize(x).flatten(1), torch.where(w >= 0, 1.0, -1.0))
    assert torch.equal(trained.bfc1(trained.binarize(x).flatten(1)), ref)
    with pytest.raises(FxpError, match="binary regularizer acts on a binarized model"):
        train_model("digits_mlp", digits, FxConfig(mode="qat"), Recipe(epochs=1, binary=1e-3), progress=False)


def test_compress_refuses_what_would_go_wrong(trained, tmp_path):
    cases = [(PruneOptions(quality={"fc2": 60}, retrain_epochs=0), "every weight of fc2 would be pruned"),
             (PruneOptions(quality=1.0, dynamic=True), "give --prune with --dynamic"),
             (PruneOptions(sparsity={}), "--prune names no layer"),
             (PruneOptions(architecture=True, tsrelu=0.1, sparsity={"fc1": 0.5}), "may merge and renumber")]
    for opts, message in cases:
        with pytest.raises(FxpError, match=message):
            compress(trained, tmp_path / "x", opts, progress=False)
        assert not (tmp_path / "x").exists()
    fixed = tmp_path / "fixed"
    run_train("digits_mlp", load("digits"), FxConfig(mode="fixed"), Recipe(epochs=1, limit_train=64), fixed,
              progress=False)
    with pytest.raises(FxpError, match="off a fixed-mode run's weight grid"):
        compress(fixed, tmp_path / "y", PruneOptions(share_bits=3), progress=False)


def test_export_checks_the_compressed_weights_file(trained, tmp_path, capsys):
    from fxp.cli import main

    run = tmp_path / "c"
    compress(trained, run, PruneOptions(sparsity=0.7, retrain_epochs=0, share_bits=3, share_epochs=0), progress=False)
    assert main(["export", str(run), "--out", str(tmp_path / "ok.fxpm")]) == 0
    raw = (run / "weights.fxpz").read_bytes()
    (run / "weights.fxpz").write_bytes(raw[: len(raw) - 40])
    assert main(["export", str(run), "--out", str(tmp_path / "bad.fxpm")]) == 2
    err = capsys.readouterr().err
    assert "not a weights file written by fxp compress" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.fxpm").exists()
    other = tmp_path / "d"  # a whole file, of another run
    compress(trained, other, PruneOptions(sparsity=0.7, retrain_epochs=0, share_bits=2, share_epochs=0),
             progress=False)
    (run / "weights.fxpz").write_bytes((other / "weights.fxpz").read_bytes())
    assert main(["export", str(run), "--out", str(tmp_path / "bad.fxpm")]) == 2
    assert "does not hold this checkpoint's weights" in capsys.readouterr().err


def test_one_sharing_round_is_the_single_clustering(trained, tmp_path):
    """--share-rounds 1 is what fxp compress --share-bits did before rounds existed, bit for bit: k-means on
    the kept weights, then the centroids trained with the Sharer (rebuilt here by hand)."""
    from fxp.cli import main
    from fxp.compress.sharing import Sharer, share_weights

    base = ["compress", str(trained), "--prune", "0.6", "--retrain-epochs", "0", "--share-bits", "3",
            "--share-epochs", "1", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--share-rounds", "1", "--out", str(tmp_path / "b")]) == 0
    a, b = (load_checkpoint(tmp_path / x / "checkpoint.pt") for x in "ab")
    model = load_checkpoint(trained / "checkpoint.pt")
    Pruner(model, sparsity_masks(model, 0.6)).remove()
    shared = {n: share_weights(m.weight.detach(), 7, mask=m.weight.detach() != 0) for n, m in prunable(model).items()}
    sharer = Sharer(model, shared)
    run = json.loads((trained / "metrics.json").read_text())["recipe"]
    recipe = replace(Recipe(**run), epochs=1, lr=run["lr"] / 10, group_in=0.0, group_out=0.0)
    fit(model, load("digits"), model.config, recipe, progress=False, pruner=sharer)
    sharer.remove()
    for name, m in prunable(model).items():
        assert torch.equal(prunable(a)[name].weight, m.weight), name
        assert torch.equal(prunable(b)[name].weight, m.weight), name
    rec = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [s["step"] for s in rec["steps"]][-2:] == ["weights shared (k-means)", "centroids trained"]
    assert len(rec["share_rounds"]) == 1 and rec["share_rounds"][0]["free_epochs"] == 0


@pytest.mark.parametrize("restart", ["codebook", "init"])
def test_iterated_sharing_keeps_2_to_the_bits_values_and_exports(trained, tmp_path, restart):
    from fxp.compress.packed import load_packed

    bits, out = 2, tmp_path / "c"
    pruned = tmp_path / "p"
    compress(trained, pruned, PruneOptions(sparsity=0.6, retrain_epochs=0), progress=False)
    rec = compress(pruned, out, PruneOptions(share_bits=bits, share_rounds=3, share_free_epochs=1, share_epochs=1,
                                             share_restart=restart, retrain_epochs=0, huffman=True), progress=False)
    names = [s["step"] for s in rec["steps"]]
    assert names == ["reference"] + [f"sharing round {r}/3: {what}" for r in (1, 2, 3) for what in
                                     (["weights trained freely"] if r > 1 else [])
                                     + ["weights shared (k-means)", "centroids trained"]]
    rounds = rec["share_rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3] and [r["free_epochs"] for r in rounds] == [0, 1, 1]
    assert all({"shared_accuracy", "trained_accuracy"} <= set(r) for r in rounds) and "free_accuracy" in rounds[2]
    assert rounds[-1]["trained_accuracy"] == rec["summary"]["accuracy"] == rec["steps"][-1]["test_accuracy"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["round"] for e in metrics["epochs"]] == ["share 1", "free 2", "share 2", "free 3", "share 3"]
    assert "## Weight sharing in 3 rounds" in (out / "report.md").read_text()
    before, after = load_checkpoint(pruned / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    packed = load_packed(out / "weights.fxpz")
    for name, m in prunable(after).items():
        w = m.weight.detach()
        assert torch.equal(w == 0, prunable(before)[name].weight.detach() == 0), name  # the zeros held, no more
        assert len(torch.unique(w)) <= 2 ** bits, name
        assert torch.equal(packed[name], w), name  # weights.fxpz holds the last round's weights
    model = export(out, tmp_path / "m.fxpm")
    for name in prunable(after):
        assert len(np.unique(model.arrays[f"{name}.weight"])) <= 2 ** bits, name


# --- uniform quantization-aware training and the range regularizer --------------------------------------

def test_weight_range_gradient_matches_its_formula():
    """d/dw of sum_c (max(w_c, 0) - min(w_c, 0))**2: +2 R_c at the channel's largest weight, -2 R_c at its
    smallest, 0 elsewhere; a channel with no negative weight has min 0 (the grid always holds 0)."""
    model = build(SMALL_CNN, FxConfig(mode="float"), seed=0)
    layers = prunable(model)
    with torch.no_grad():
        model.fc1.weight[3] = model.fc1.weight[3].abs() + 0.01  # all positive: its range is [0, max]
    grads = torch.autograd.grad(regularizers.weight_range(model), [m.weight for m in layers.values()])
    total = 0.0
    for (n, m), g in zip(layers.items(), grads, strict=True):
        rows = m.weight.detach().flatten(1)
        hi, lo = rows.max(1), rows.min(1)
        r = hi.values.clamp(min=0) - lo.values.clamp(max=0)
        want = torch.zeros_like(rows)
        idx = torch.arange(len(rows))
        want[idx, hi.indices] += 2 * r * (hi.values > 0)
        want[idx, lo.indices] -= 2 * r * (lo.values < 0)
        torch.testing.assert_close(g.flatten(1), want, msg=n)
        total += float((r**2).sum())
    assert float(regularizers.weight_range(model).detach()) == pytest.approx(total, rel=1e-6)
    assert not grads[2][3].lt(0).any() and grads[2][3].gt(0).sum() == 1


@pytest.fixture(scope="module")
def float_run(tmp_path_factory, digits):
    run = tmp_path_factory.mktemp("uniform") / "float"
    run_train("digits_mlp", digits, FxConfig(mode="float"), Recipe(epochs=3, batch_size=32), run, progress=False)
    return run


def test_uniform_qat_steps_the_master_weights_by_the_gradient_at_the_grid(digits):
    """Straight-through: the gradient is taken at the weights on the grid, the step lands on the float master
    weights, and the layers hold the master weights snapped again."""
    from fxp.compress.uniform import UniformQAT, snap

    model = build("digits_mlp", FxConfig(mode="float"), seed=0)
    qat = UniformQAT(model, Pruner(model, kept(model)), 3, "affine")
    master = {n: w.clone() for n, w in qat.master.items()}
    for n, m in prunable(model).items():  # the forward pass sees the grid
        assert torch.equal(m.weight.detach(), torch.from_numpy(snap(master[n], 3, symmetric=False, per_channel=True)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(digits.x_train[:64]), digits.y_train[:64])
    loss.backward()
    grads = {n: m.weight.grad.clone() for n, m in prunable(model).items()}
    opt.step()
    qat.after_step()
    for n, m in prunable(model).items():
        torch.testing.assert_close(qat.master[n], master[n] - 0.1 * grads[n], rtol=0, atol=1e-6)
        assert torch.equal(m.weight.detach(), torch.from_numpy(snap(qat.master[n], 3, symmetric=False,
                                                                    per_channel=True)))
    qat.remove()


@pytest.mark.parametrize("bits,scheme,per_channel", [(4, "affine", True), (3, "symmetric", False)])
def test_uniform_qat_exports_the_codes_of_its_grid(float_run, digits, tmp_path, bits, scheme, per_channel):
    """fxp compress --uniform: the checkpoint's weights sit on the grid (a fixed point of uniform's quantizer),
    fxp export stores exactly uniform.quantize's codes of them (==), and the golden model classifies the test set."""
    from fxp.cli import main
    from fxp.compress import uniform

    out = tmp_path / "u"
    rec = compress(float_run, out, PruneOptions(uniform_bits=bits, uniform_scheme=scheme,
                                                uniform_per_channel=per_channel, retrain_epochs=1, range_reg=0.1),
                   progress=False)
    u = rec["uniform"]
    assert (u["bits"], u["scheme"], u["per_channel"], u["range_reg"]) == (bits, scheme, per_channel, 0.1)
    assert u["accuracy_before"] == rec["steps"][0]["test_accuracy"] and u["accuracy_after"] == rec["summary"]["accuracy"]
    assert rec["steps"][-1]["test_accuracy"] == u["accuracy_after"]  # the last epoch computed with the saved weights
    assert [r["layer"] for r in u["layers"]] == ["fc1", "fc2"] and all(
        {"min", "max", "channel_range_mean"} <= set(r["before"]) for r in u["layers"])
    assert f"## Uniform quantization ({bits}-bit {scheme}" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["uniform"] == {"bits": bits, "scheme": scheme, "per_channel": per_channel}
    model = load_checkpoint(out / "checkpoint.pt")
    kw = uniform.scheme_args(scheme)
    desc = tmp_path / "u.fxpm"
    assert main(["export", str(out), "--out", str(desc), "--scales", "per-channel", "--weights", scheme,
                 "--calibrate", "300"]) == 0
    m = fxpm.load(desc)
    offset = 0 if scheme == "symmetric" else 2 ** (bits - 1)
    for name, layer in prunable(model).items():
        w = layer.weight.detach()
        assert np.array_equal(uniform.snap(w, bits, per_channel=per_channel, **kw), w.numpy())  # on the grid
        assert len(torch.unique(w[0])) <= 2**bits
        q, scale, zp = uniform.codes(w, bits, per_channel=per_channel, **kw)
        entry = next(x for x in m.layers if x["name"] == name)
        assert entry["weight_format"] == f"s{bits}.0"
        stored = m.arrays[f"{name}.weight"].astype(np.int64)
        assert np.array_equal(stored, q.astype(np.int64) - offset)
        if scheme == "affine":
            zps = np.broadcast_to(zp.astype(np.int64), (w.shape[0],))
            assert np.array_equal(m.arrays[f"{name}.weight_zero_point"].astype(np.int64), zps - offset)
        else:
            assert "weight_zero_point" not in entry
        # the codes and the scales give back the checkpoint's weights, bit for bit
        assert np.array_equal(uniform.dequantize(q, scale, zp, 0 if per_channel else None), w.numpy())
    assert main(["predict", str(desc), "--run", str(out), "--json", str(tmp_path / "p.json")]) == 0
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["integer_mismatches"] == 0 and p["images"] == len(digits.y_test)
    assert p["golden_accuracy"] > 0.8 and abs(p["golden_accuracy"] - u["accuracy_after"]) < 0.05


def test_uniform_without_retraining_is_post_training_quantization(float_run, tmp_path):
    rec = compress(float_run, tmp_path / "ptq", PruneOptions(uniform_bits=2, retrain_epochs=0), progress=False)
    assert [s["step"] for s in rec["steps"]] == ["reference", "round 1/1: uniform 2-bit affine (no retraining)"]
    u = rec["uniform"]
    assert u["accuracy_quantized"] == u["accuracy_after"] == rec["summary"]["accuracy"] < u["accuracy_before"]
    model = load_checkpoint(tmp_path / "ptq" / "checkpoint.pt")
    assert all(len(torch.unique(row)) <= 4 for m in prunable(model).values() for row in m.weight.detach())


def test_range_regularizer_narrows_the_channels(float_run, tmp_path):
    ranges = {}
    for lam in (0.0, 1.0):
        rec = compress(float_run, tmp_path / f"r{lam}", PruneOptions(uniform_bits=4, retrain_epochs=1, range_reg=lam),
                       progress=False)
        ranges[lam] = [r["after"]["channel_range_mean"] for r in rec["uniform"]["layers"]]
    assert all(b < 0.8 * a for a, b in zip(ranges[0.0], ranges[1.0], strict=True))


def test_uniform_refuses_what_it_cannot_do(trained, float_run, tmp_path):
    cases = [(trained, PruneOptions(uniform_bits=4), "fine-tunes a float run; run .* is qat mode"),
             (float_run, PruneOptions(uniform_bits=4, share_bits=3), "give --share-bits or --uniform, not both"),
             (float_run, PruneOptions(uniform_bits=1, uniform_scheme="symmetric"), "a symmetric 1-bit grid"),
             (float_run, PruneOptions(uniform_bits=9), "uniform bits"),
             (float_run, PruneOptions(uniform_bits=4, uniform_scheme="narrow"), "uniform scheme 'narrow'"),
             (float_run, PruneOptions(uniform_bits=4, range_reg=-1.0), "range_reg")]
    for run, opts, message in cases:
        with pytest.raises(FxpError, match=message):
            compress(run, tmp_path / "x", opts, progress=False)
        assert not (tmp_path / "x").exists()
