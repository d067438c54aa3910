"""Fixed-point layers and training: exact forward, formats, checkpoints, accumulators."""

import json
from fractions import Fraction

import pytest
import torch
from reference import fit, round_fraction

from fxp import Format, FxpError
from fxp.datasets import load
from fxp.layers import FxConfig, named_trackers
from fxp.models import build, load_spec
from fxp.train import Recipe, load_checkpoint, run_train, train_model

TINY = {"name": "tiny", "input_shape": [1, 1, 4],
        "layers": [{"type": "flatten"}, {"type": "linear", "out": 3}, {"type": "relu"}, {"type": "linear", "out": 2}]}


def _requant(v: int, shift: int, fmt: Format) -> int:
    return fit(round_fraction(Fraction(v, 2**shift), "nearest_even"), fmt, "saturate")[0]


def test_tiny_fixed_forward_equals_integer_forward():
    cfg = FxConfig(mode="fixed", act_bits=8, update_bits=8, exact=True)
    model = build(TINY, cfg).eval()
    g = torch.Generator().manual_seed(0)
    fr = {"input": 4, "fc1.w": 6, "fc1.b": 6, "fc1.out": 3, "fc2.w": 5, "fc2.b": 5, "fc2.out": 2}
    model.input.act.frac_bits = fr["input"]
    model.fc1.out.act.frac_bits = fr["fc1.out"]
    model.fc2.out.act.frac_bits = fr["fc2.out"]
    raws = {}
    for layer in ("fc1", "fc2"):
        m = getattr(model, layer)
        for p in ("weight", "bias"):
            f = fr[f"{layer}.{p[0]}"]
            m.ptrack[p].frac_bits = f
            r = torch.randint(-128, 128, getattr(m, p).shape, generator=g)
            raws[f"{layer}.{p}"] = r.tolist()
            with torch.no_grad():
                getattr(m, p).copy_(r.double() * 2.0**-f)
    x = torch.rand(16, 1, 1, 4, generator=g) * 12 - 6
    got = (model(x) * 2**fr["fc2.out"]).to(torch.int64).tolist()

    s8 = lambda f: Format(8, f)  # noqa: E731
    for n in range(16):
        xr = [fit(round_fraction(Fraction(float(v)) * 2 ** fr["input"], "nearest_even"), s8(4), "saturate")[0]
              for v in x[n].flatten().tolist()]
        h = []
        for i in range(3):  # accumulator binary point: input 4 + weight 6 = 10
            acc = sum(a * w for a, w in zip(xr, raws["fc1.weight"][i])) + (raws["fc1.bias"][i] << (10 - 6))
            h.append(max(0, _requant(acc, 10 - fr["fc1.out"], s8(fr["fc1.out"]))))
        out = []
        for i in range(2):  # 3 + 5 = 8
            acc = sum(a * w for a, w in zip(h, raws["fc2.weight"][i])) + (raws["fc2.bias"][i] << (8 - 5))
            out.append(_requant(acc, 8 - fr["fc2.out"], s8(fr["fc2.out"])))
        assert got[n] == out, n


def test_narrow_accumulator_wraps_or_saturates():
    x = torch.ones(1, 1, 1, 4)
    for overflow in ("saturate", "wrap"):
        cfg = FxConfig(mode="fixed", act_bits=16, update_bits=8, acc_bits=8, acc_overflow=overflow, exact=True)
        model = build(TINY, cfg).eval()
        model.input.act.frac_bits = 0
        model.fc1.ptrack["weight"].frac_bits = 3
        model.fc1.ptrack["bias"].frac_bits = 3
        model.fc1.out.act.frac_bits = 3
        with torch.no_grad():
            model.fc1.weight.fill_(2.25)  # 4 x 2.25 = 9 fits the s8.3 accumulator (-16..15.875)
            model.fc1.bias.zero_()
        y = model.fc1(model.flatten(model.input(x)))
        assert y[0, 0].item() == 9.0
        with torch.no_grad():
            model.fc1.weight.fill_(4.875)  # 4 x 4.875 = 19.5 → saturate 15.875, wrap 19.5 - 32 = -12.5
        y = model.fc1(model.flatten(model.input(x)))
        assert y[0, 0].item() == {"saturate": 15.875, "wrap": -12.5}[overflow]


def test_fixed_mode_keeps_parameters_on_their_grid_and_formats_move():
    d = load("digits")
    recipe = Recipe(epochs=2, batch_size=64, limit_train=512)
    model, hist = train_model("digits_mlp", d, FxConfig(mode="fixed"), recipe, progress=False)
    for name, t in named_trackers(model).items():
        if name.endswith(("weight", "bias")):
            p = dict(model.named_parameters())[name]
            raw = p.detach().double() * 2.0**t.frac_bits
            assert torch.equal(raw, raw.round()), name
            assert raw.abs().max() <= 2 ** (t.word_bits - 1)
    grads = [t for n, t in named_trackers(model).items() if n.endswith("grad") and t.frac_bits is not None]
    assert grads and all(len(t.history) > 0 for t in grads)


def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    d = load("digits")
    recipe = Recipe(epochs=2, batch_size=64, limit_train=400)
    for mode in ("fixed", "qat"):
        run_train("digits_mlp", d, FxConfig(mode=mode), recipe, tmp_path / mode, progress=False)
        model = load_checkpoint(tmp_path / mode / "checkpoint.pt")
        again, _ = train_model("digits_mlp", d, FxConfig(mode=mode), recipe, progress=False)
        again.eval()
        assert torch.equal(model(d.x_test), again(d.x_test))  # same seed: same model, bit for bit
        m = json.loads((tmp_path / mode / "metrics.json").read_text())
        assert m["mode"] == mode and len(m["epochs"]) == 2 and m["formats"]


def test_config_file_model_equals_builtin(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('input_shape = [1, 8, 8]\n[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "linear"\nout = 64\n'
                 '[[layers]]\ntype = "relu"\n[[layers]]\ntype = "linear"\nout = 10\n')
    a, b = build(str(f), FxConfig(mode="float")), build("digits_mlp", FxConfig(mode="float"))
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "spec,match",
    [({"input_shape": [1, 8, 8], "layers": [{"type": "dense"}]}, "type 'dense' is not supported"),
     ({"input_shape": [1, 8], "layers": [{"type": "flatten"}]}, "input_shape"),
     ({"input_shape": [1, 8, 8], "layers": [{"type": "linear", "out": 3}]}, "add a flatten layer"),
     ({"input_shape": [1, 8, 8], "layers": [{"type": "linear", "units": 3}]}, r"unknown key\(s\) units"),
     ({"input_shape": [1, 4, 4], "layers": [{"type": "conv2d", "out": 2, "kernel": 7}]}, "does not fit")],
)
def test_bad_model_specs(spec, match):
    with pytest.raises(FxpError, match=match):
        build(spec, FxConfig())


def test_bad_config():
    with pytest.raises(FxpError, match="mode='int' is not a training mode"):
        FxConfig(mode="int")
    with pytest.raises(FxpError, match="act_bits must be a whole number of bits in 2..64"):
        FxConfig(act_bits=1)


def test_digits_mlp_fixed_mode_end_to_end(tmp_path):
    """The README's demo recipe: fixed point, 10-bit propagations, 12-bit updates, >= 95 %."""
    import time

    from fxp.cli import main

    t = time.perf_counter()
    assert main(["train", "--mode", "fixed", "--out", str(tmp_path), "--quiet"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    print(f"digits fixed: {100 * m['test_accuracy']:.2f} % in {time.perf_counter() - t:.1f} s")
    assert m["test_accuracy"] >= 0.95
    assert {"checkpoint.pt", "metrics.json", "curves.png", "weights.png"} <= {p.name for p in tmp_path.iterdir()}


def test_spec_loading_names_builtins():
    with pytest.raises(FxpError, match="neither a built-in .*lenet5.* nor a TOML file"):
        load_spec("resnet50")
