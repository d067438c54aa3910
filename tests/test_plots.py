"""Figures: weights as the forward pass uses them, training curves that keep both runs visible."""

import matplotlib.pyplot as plt
import torch

from fxp.datasets import load
from fxp.format import Format
from fxp.layers import FxConfig
from fxp.models import build
from fxp.plots import forward_weights, training_curves, training_figure, weight_figure, weight_histograms
from fxp.train import Recipe, train_model


def _qat_model():
    cfg, recipe = FxConfig(mode="qat", weight_bits=4), Recipe(epochs=1, batch_size=64, limit_train=200)
    model, _ = train_model("digits_mlp", load("digits"), cfg, recipe, progress=False)
    return model


def test_qat_weights_are_the_rounded_ones_not_the_float_masters():
    model = _qat_model()
    model.train()
    weights = {w["name"]: w for w in forward_weights(model)}
    assert list(weights) == ["fc1.weight", "fc2.weight"]
    assert model.training and model.fc1.training  # looking does not leave the model in eval mode
    for name, w in weights.items():
        fmt = Format.parse(w["format"])
        assert fmt == model.get_submodule(name.split(".")[0]).ptrack["weight"].fmt
        raw = w["values"].double() * 2.0**fmt.frac_bits
        assert torch.equal(raw, raw.round()) and raw.min() >= fmt.raw_min and raw.max() <= fmt.raw_max
        assert torch.unique(w["values"]).numel() <= 16
        assert not torch.equal(w["values"], model.get_parameter(name).detach().flatten())


def test_float_and_binarized_weights():
    float_model = build("digits_mlp", FxConfig(mode="float"))
    for w in forward_weights(float_model):
        assert w["format"] is None and torch.equal(w["values"], float_model.get_parameter(w["name"]).detach().flatten())
    bnn = build("bnn_digits", FxConfig(mode="qat"))
    weights = forward_weights(bnn)
    assert [w["name"] for w in weights] == ["bfc1.weight", "bfc2.weight"]
    for w in weights:
        assert set(w["values"].tolist()) == {-1.0, 1.0} and w["kind"].startswith("sign(w)")


def test_every_weight_panel_is_labeled():
    fig = weight_figure(_qat_model())
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 2
    for ax in panels:
        assert ax.get_xlabel() == "weight value" and ax.get_ylabel() == "count"
        assert ax.get_title().startswith(("fc1.weight: s4.", "fc2.weight: s4.")) and "distinct values" in ax.get_title()
    plt.close(fig)


def _metrics(baseline: bool) -> dict:
    def hist(accs):
        return [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": a, "test_accuracy": a}
                for i, a in enumerate(accs)]

    m = {"model": "m", "dataset": "d", "mode": "fixed", "epochs": hist([0.5, 0.7, 0.8])}
    if baseline:
        m["float_baseline"] = {"test_accuracy": 0.85, "epochs": hist([0.6, 0.7, 0.85])}
    return m


def test_training_curves_tell_the_runs_apart_and_show_the_gap():
    fig = training_figure(_metrics(False))
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = training_figure(_metrics(True))
    _, acc, gap = fig.axes
    run, base = (next(ln for ln in acc.get_lines() if ln.get_label() == f"{name} (test)")
                 for name in ("fixed", "float baseline"))
    assert run.get_linestyle() != base.get_linestyle() and run.get_marker() != base.get_marker()
    assert base.get_markerfacecolor() == "none" and base.get_alpha() < 1
    heights = [round(p.get_height(), 9) for p in gap.patches]
    assert heights == [10.0, 0.0, 5.0]
    plt.close(fig)


def test_figures_are_deterministic():
    model = _qat_model()
    assert weight_histograms(model) == weight_histograms(model)
    assert training_curves(_metrics(True)) == training_curves(_metrics(True))
