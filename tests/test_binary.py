"""Binarized networks: sign convention, XNOR-popcount equals ±1 arithmetic, exact threshold folding, export."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fxp import fxpm, torch_int
from fxp.binary import (
    BWNConv2d,
    XNORConv2d,
    bn_sign_reference,
    bwn_weight,
    fold_threshold,
    sign,
    xnor_conv2d_popcount,
)
from fxp.datasets import load
from fxp.export import export_binary
from fxp.layers import FxConfig
from fxp.train import Recipe, evaluate, train_model
from sim import golden


def test_sign_zero_is_plus_one_and_ste_clips():
    x = torch.tensor([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0], requires_grad=True)
    y = sign(x)
    assert y.tolist() == [-1, -1, 1, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_bwn_alpha_is_mean_abs_per_output_channel():
    w = torch.tensor([[0.5, -1.5], [2.0, 0.0]])
    assert bwn_weight(w).tolist() == [[1.0, -1.0], [1.0, 1.0]]
    conv = BWNConv2d(2, 3, 3)
    a = conv.weight.abs().mean(dim=(1, 2, 3))
    assert torch.allclose(bwn_weight(conv.weight).abs().amax(dim=(1, 2, 3)), a)


@pytest.mark.parametrize("stride", [1, 2])
def test_xnor_popcount_convolution_equals_pm1_convolution(stride):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 3, 9, 9, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    pm1 = torch.nn.functional.conv2d(sign(x), sign(w), stride=stride)
    assert np.array_equal(xnor_conv2d_popcount(x, w, stride), pm1.round().long().numpy())


def test_xnor_net_layer_scales_by_k_map_and_alpha():
    torch.manual_seed(0)
    layer = XNORConv2d(3, 2, 3, bias=False)
    x = torch.randn(1, 3, 6, 6)
    a = x.abs().mean(dim=1, keepdim=True)
    k = torch.nn.functional.avg_pool2d(a, 3, stride=1)
    alpha = layer.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
    expect = torch.from_numpy(xnor_conv2d_popcount(x, layer.weight)).float() * k * alpha
    assert torch.allclose(layer(x), expect)


@given(st.integers(1, 300), st.floats(-400, 400), st.floats(0, 100), st.floats(1e-6, 1e-2),
       st.one_of(st.floats(-5, 5), st.just(0.0)), st.floats(-5, 5), st.data())
def test_folded_threshold_matches_batchnorm_then_sign(k, mean, var, eps, gamma, beta, data):
    t, flip = fold_threshold(k, mean, var, eps, gamma, beta)
    assert 0 <= t <= k + 1
    for pc in data.draw(st.lists(st.integers(0, k), min_size=1, max_size=20)) + [0, k]:
        bit = int((k - pc if flip else pc) >= t)
        assert bit == bn_sign_reference(2 * pc - k, mean, var, eps, gamma, beta), (pc, t, flip)


def test_folded_threshold_at_exact_boundaries():
    # BN(y) = (y - 3) * gamma: zero exactly at y = 3, i.e. pc = 5 for k = 7; sign(0) = +1 on both sides
    assert fold_threshold(7, 3.0, 1.0, 0.0, 2.0, 0.0) == (5, False)
    assert fold_threshold(7, 3.0, 1.0, 0.0, -2.0, 0.0) == (2, True)  # y <= 3  <=>  7 - pc >= 2
    assert fold_threshold(7, 0.0, 1.0, 0.0, 0.0, -1.0) == (8, False)  # gamma 0, beta < 0: never +1


def test_bnn_digits_export_is_exact(tmp_path):
    """Train a small BNN, export it, and check golden == PyTorch integer path == the float BNN's bits."""
    d = load("digits")
    recipe = Recipe(epochs=3, batch_size=64, lr=0.01, optimizer="adam")
    model, _ = train_model("bnn_digits", d, FxConfig(mode="qat"), recipe, progress=False)
    model.eval()
    spec, arrays = export_binary(model, "bnn")
    m = fxpm.Model(spec, arrays)
    x = d.x_test.numpy()
    g, t = golden.run(m, x), torch_int.run(m, x)
    for a, b in zip(g, t):
        assert np.array_equal(a, b.numpy())
    # the hidden bits equal the PyTorch model's sign(BN(.)) outputs, up to float32 rounding of BN at boundaries
    with torch.no_grad():
        h = model.sign1(model.bn1(model.bfc1(model.flatten(model.binarize(d.x_test)))))
    agree = (g[2] == (h.numpy() > 0)).mean()
    assert agree > 0.999
    assert (g[-1].argmax(1) == d.y_test.numpy()).mean() == pytest.approx(evaluate(model, d.x_test, d.y_test), abs=0.01)


def test_binary_cnn_exports_exactly(tmp_path):
    """binary_conv2d (no padding) + BatchNorm2d + sign folded into thresholds, max-pooling of bits, then a
    binary dense layer: the golden model equals the trained network on every image, and the PyTorch path."""
    from fxp.cli import main

    assert main(["train", "--model", "bcnn_digits", "--epochs", "2", "--limit-train", "600", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b.fxpm")]) == 0
    from fxp import fxpm

    assert [x["op"] for x in fxpm.load(tmp_path / "b.fxpm").layers] == ["binary_conv2d", "maxpool2d", "flatten",
                                                                          "binary_dense"]
    assert main(["predict", str(tmp_path / "b.fxpm"), "--run", str(tmp_path / "run"), "--json",
                 str(tmp_path / "p.json")]) == 0
    import json

    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["integer_mismatches"] == 0 and rec["golden_accuracy"] == rec["fake_quantized_accuracy"] > 0.15  # above chance: it trained
