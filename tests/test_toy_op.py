"""A new op needs one class and nothing else: a toy elementwise clamp, added here by subclassing Op."""

import numpy as np
import pytest
import torch

from fxp import FxpError, fxpm, torch_int
from fxp.cli import main
from fxp.ops import OPS, Activation, Field, Op
from sim import golden


@pytest.fixture
def clamp_op():
    """Registers the toy op for one test, and unregisters it after (other tests share the process)."""

    class Clamp(Op):
        """``clamp`` (lo, hi): every integer clamped to lo..hi; the format stays the input's."""

        op = "clamp"
        fields = {"lo": Field(int), "hi": Field(int)}

        def accepts(self, incoming: Activation) -> None:
            super().accepts(incoming)
            if incoming.format is None:
                raise self.error(f"clamp needs integer input, got {incoming.kind}")

        def produces(self) -> Activation:
            return self.incoming

        def check(self) -> None:
            fmt = self.incoming.format
            if not fmt.raw_min <= self.lo <= self.hi <= fmt.raw_max:
                raise self.error(f"{self.lo}..{self.hi} is not a range inside {fmt}", "lo")

        def golden(self, x: np.ndarray) -> np.ndarray:
            return np.clip(x, self.lo, self.hi)

        def torch(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(self.lo, self.hi)

    yield Clamp
    del OPS["clamp"]


def _description(**clamp) -> fxpm.Model:
    """dense 6 → 4 on s8.3 inputs, then the clamp."""
    rng = np.random.default_rng(0)
    spec = {"format": "fxpm", "version": 1, "name": "toy",
            "input": {"shape": [6], "quantizer": {"kind": "fixed", "format": "s8.3"}},
            "layers": [{"name": "fc", "op": "dense", "out_features": 4, "input_format": "s8.3", "weight_format": "s8.6",
                        "output_format": "s8.3", "acc_bits": 32, "relu": False, "input_zero_point": 0,
                        "output_zero_point": 0, "weights": "fc.w", "multiplier": "fc.m", "shift": "fc.s"},
                       {"name": "clip", "op": "clamp", **clamp}]}
    arrays = {"fc.w": rng.integers(-128, 128, (4, 6)).astype(np.int8), "fc.m": np.ones(4, np.int64),
              "fc.s": np.full(4, 6, np.int64)}
    return fxpm.Model(spec, arrays)


def test_toy_op_validates_and_runs_alike_in_golden_and_torch(clamp_op):
    model = _description(lo=-20, hi=30)
    assert model.shapes == [(4,), (4,)] and isinstance(model.ops[1], clamp_op) and model.ops[1].engine is None
    x = np.random.default_rng(1).uniform(-16, 16, (50, 6))
    g, t = golden.run(model, x, batch=7), torch_int.run(model, x)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(g, t))
    assert g[2].min() == -20 and g[2].max() == 30 and g[1].min() < -20 and g[1].max() > 30  # it did clamp


@pytest.mark.parametrize("clamp,match", [
    ({"hi": 3}, r"layers\[1\] \(clip\): missing field 'lo'"),
    ({"lo": "x", "hi": 3}, r"layers\[1\] \(clip\)\.lo: expected int, got 'x'"),
    ({"lo": 5, "hi": 300}, r"layers\[1\] \(clip\)\.lo: 5\.\.300 is not a range inside s8\.3"),
])
def test_toy_op_refuses_a_bad_field_by_name(clamp_op, clamp, match):
    with pytest.raises(FxpError, match=match):
        _description(**clamp)


def test_unregistered_op_is_refused():
    with pytest.raises(FxpError, match=r"layers\[1\] \(clip\)\.op: 'clamp' is not supported"):
        _description(lo=0, hi=1)


def test_no_hardware_engine_builds_the_toy_op(clamp_op, tmp_path, capsys):
    model = _description(lo=-20, hi=30)
    fxpm.save(tmp_path / "toy.fxpm", model.spec, model.arrays)
    code = main(["gen", "unit", "--from", str(tmp_path / "toy.fxpm"), "--layer", "clip", "--out", str(tmp_path / "u")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "clamp" in err[0] and "engine" in err[0], err
    assert not (tmp_path / "u").exists()
    # nor is it part of a network: the accelerator's generator names the layer and what it builds
    code = main(["gen", "model", str(tmp_path / "toy.fxpm"), "--out", str(tmp_path / "n")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "layer clip is clamp, which no engine builds yet" in err[0], err
    assert not (tmp_path / "n").exists()
