"""The golden model against the PyTorch integer path, and both against exact references."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from descriptions import random_bnn, random_cnn
from hypothesis import given
from hypothesis import strategies as st

from fxp import torch_int
from fxp.bits import pack_bits, xnor_popcount
from fxp.ops.integer_layer import requantize
from sim import golden


def same_everywhere(model, x):
    g, t = golden.run(model, x, batch=7), torch_int.run(model, x)
    assert len(g) == len(t) == len(model.layers) + 1
    for i, (a, b) in enumerate(zip(g, t)):
        assert a.shape == tuple(b.shape) and a.dtype == np.int64
        assert np.array_equal(a, b.numpy()), f"layer {i}: {(a != b.numpy()).sum()} mismatches"
    return g


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zero_points,pow2", [(False, True), (True, False), (True, True)])
def test_random_int_cnn_golden_equals_torch(seed, zero_points, pow2):
    model = random_cnn(seed, zero_points, pow2)
    x = np.random.default_rng(seed).uniform(-5, 5, (23, 2, 9, 9))
    g = same_everywhere(model, x)
    assert len(np.unique(g[-1])) > 5  # not saturated into a constant
    relu_out = g[1]
    assert relu_out.min() >= model.layers[0]["output_zero_point"]  # ReLU folded into the clamp


@pytest.mark.parametrize("seed", range(4))
def test_random_bnn_golden_equals_torch_and_counts_bits(seed):
    model = random_bnn(seed)
    x = np.random.default_rng(seed).uniform(0, 1, (31, 70))
    g = same_everywhere(model, x)
    # first layer by hand: popcount(XNOR) is the number of agreeing bits
    bits = (x >= 0.5).astype(np.int64)
    w = np.unpackbits(model.arrays["b0.w"], axis=1, count=70, bitorder="little").astype(np.int64)
    pc = (bits[:, None, :] == w[None, :, :]).sum(axis=2)
    assert np.array_equal(g[1], (pc >= model.arrays["b0.t"]).astype(np.int64))
    assert g[-1].min() >= 0 and g[-1].max() <= 20  # the last layer's popcounts


@pytest.mark.parametrize("kernel", ["golden", "native", "native-portable"])
def test_xnor_popcount_word_boundaries(kernel, monkeypatch, tmp_path):
    from sim import native

    if kernel == "native-portable":  # the scalar path a CPU without AVX-512 VPOPCNTDQ takes
        monkeypatch.setattr(native, "FLAGS", ["-O2", "-shared", "-fPIC"])
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        native._library.cache_clear()
    fn = xnor_popcount if kernel == "golden" else native.xnor_popcount
    rng = np.random.default_rng(0)
    # word counts below, at and above the 8-word vector step, and rows beyond one 64-row block
    for k, m in ((1, 5), (63, 5), (64, 5), (65, 5), (127, 5), (128, 5), (200, 5), (512, 3), (1000, 70)):
        a = rng.integers(0, 2, (m, k))
        b = rng.integers(0, 2, (6, k))
        got = fn(pack_bits(a), pack_bits(b), k)
        assert got.dtype == np.int64 and np.array_equal(got, (a[:, None, :] == b[None, :, :]).sum(axis=2)), k
    native._library.cache_clear()


def _bias_only_model(acc: int, mult: int, shift: int, zp: int, relu: bool):
    """A 1x1 dense layer whose input quantizes to 0, so its accumulator is exactly the bias."""
    from fxp import fxpm

    spec = {"format": "fxpm", "version": 1, "name": "r", "input": {"shape": [1], "quantizer": {"kind": "fixed", "format": "s8.0"}},
            "layers": [{"name": "d", "op": "dense", "out_features": 1, "input_format": "s8.0", "weight_format": "s8.0",
                        "output_format": "s8.0", "acc_bits": 32, "relu": relu, "input_zero_point": 0,
                        "output_zero_point": zp, "weights": "w", "bias": "b", "multiplier": "m", "shift": "s"}]}
    arrays = {"w": np.zeros((1, 1), np.int8), "b": np.array([acc], np.int32), "m": np.array([mult], np.int64),
              "s": np.array([shift], np.int64)}
    return fxpm.Model(spec, arrays)


@given(st.integers(-(2**31) + 2**16, 2**31 - 2**16), st.integers(1, 2**31 - 1), st.integers(0, 62), st.integers(-128, 127),
       st.booleans())
def test_requantize_equals_exact_rational(acc, mult, shift, zp, relu):
    """(acc * M + 2**(S-1)) >> S is acc * M / 2**S rounded to nearest with ties toward +inf; then zero point, clamp."""
    lo = zp if relu else -128
    expect = max(lo, min(127, (Fraction(acc * mult, 2**shift) + Fraction(1, 2)).__floor__() + zp))
    model = _bias_only_model(acc, mult, shift, zp, relu)
    x = np.zeros((1, 1))
    assert int(golden.run(model, x)[-1][0, 0]) == expect
    assert int(torch_int.run(model, x)[-1][0, 0]) == expect


@given(st.integers(0, 2**20), st.integers(12, 40))
def test_requantize_ties_round_up(q, shift):
    acc = (2 * q + 1) << (shift - 1)  # exactly q + 1/2 after the shift
    got = requantize(np.array([acc, -acc], np.int64), np.array([1, 1], np.int64),
                     np.array([shift, shift], np.int64), 0, -(2**40), 2**40, 0)
    assert got.tolist() == [q + 1, -q]  # ties toward +inf on both sides


def test_input_quantizer_rounds_half_up_and_saturates():
    model = random_cnn(0)
    x = np.zeros((1, 2, 9, 9))
    x.flat[:5] = [0.5 / 32, -0.5 / 32, 1.5 / 32, 10.0, -10.0]  # s8.5: steps of 1/32
    q = golden.quantize_input(model, x).flatten()[:5]
    assert q.tolist() == [1, 0, 2, 127, -128]
    assert torch.equal(torch_int.run(model, x)[0].flatten()[:5], torch.tensor([1, 0, 2, 127, -128]))
