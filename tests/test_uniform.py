"""Uniform b-bit quantization (fxp.compress.uniform) against PyTorch's observers and quantized tensors, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from fxp.compress.uniform import (
    EPS,
    codes,
    dequantize,
    fake_quantize,
    quant_range,
    quantize,
    scale_zero_point,
    scheme_args,
    snap,
    uniform_bytes,
)
from fxp.errors import FxpError

# torch warns that quantized tensors are deprecated; they are still what the formulas are checked against
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")

SHAPES = [(64,), (16, 32), (8, 3, 5, 5)]


def _dtype(symmetric: bool) -> torch.dtype:
    return torch.qint8 if symmetric else torch.quint8


def _observer(symmetric: bool, axis: int | None = None, qrange: tuple[int, int] | None = None):
    kw = {"dtype": _dtype(symmetric)}
    if qrange is not None:
        kw.update(quant_min=qrange[0], quant_max=qrange[1])
    if axis is None:
        return MinMaxObserver(qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine, **kw)
    return PerChannelMinMaxObserver(ch_axis=axis, qscheme=torch.per_channel_symmetric if symmetric
                                    else torch.per_channel_affine, **kw)


def _weights(seed: int, shape: tuple) -> torch.Tensor:
    """Gaussian weights of varied spread; odd seeds shift them off zero so affine zero points vary."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * (0.02 + 0.3 * seed)
    return w + 0.05 * (seed - 2) if seed % 2 else w


def _check_per_tensor(w: torch.Tensor, symmetric: bool) -> None:
    obs = _observer(symmetric)
    obs(w)
    t_scale, t_zp = obs.calculate_qparams()
    scale, zp = scale_zero_point(w.numpy(), symmetric=symmetric, per_channel=False)
    assert scale.dtype == np.float32 and scale.item() == t_scale.item() and zp.item() == t_zp.item()
    tq = torch.quantize_per_tensor(w, t_scale.item(), int(t_zp.item()), _dtype(symmetric))
    q = quantize(w, scale, zp, symmetric=symmetric)
    assert torch.equal(torch.from_numpy(q), tq.int_repr())
    assert torch.equal(torch.from_numpy(dequantize(q, scale, zp)), tq.dequantize())


def _check_per_channel(w: torch.Tensor, symmetric: bool, axis: int) -> None:
    obs = _observer(symmetric, axis)
    obs(w)
    t_scales, t_zps = obs.calculate_qparams()
    scales, zps = scale_zero_point(w, symmetric=symmetric, per_channel=True, axis=axis)
    assert torch.equal(torch.from_numpy(scales), t_scales)
    assert torch.equal(torch.from_numpy(zps).long(), t_zps.long())
    tq = torch.quantize_per_channel(w, t_scales.double(), t_zps.long(), axis, _dtype(symmetric))
    q = quantize(w, scales, zps, axis=axis, symmetric=symmetric)
    assert torch.equal(torch.from_numpy(q), tq.int_repr())
    assert torch.equal(torch.from_numpy(dequantize(q, scales, zps, axis=axis)), tq.dequantize())


@pytest.mark.parametrize("symmetric", [True, False], ids=["qint8-symmetric", "quint8-affine"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_tensor_equals_torch(shape, symmetric):
    for seed in range(6):
        _check_per_tensor(_weights(seed, shape), symmetric)


@pytest.mark.parametrize("symmetric", [True, False], ids=["qint8-symmetric", "quint8-affine"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)  # torch's per-channel observer needs 2+ dimensions
def test_per_channel_equals_torch(shape, symmetric):
    for seed in range(6):
        w = _weights(seed, shape)
        if seed == 3:
            w[1] = 0  # an all-zero channel: scale eps, zero point 0
        for axis in range(len(shape)):
            _check_per_channel(w, symmetric, axis)


def test_exact_ties_round_half_to_even():
    # max|w| = 127.5 / 16 gives the symmetric scale 1/16 exactly, so (k + 0.5) / 16 are exact ties
    k = np.arange(-128, 127)
    ties = ((k + 0.5) / 16).astype(np.float32)
    w = np.concatenate([ties, [127.5 / 16]]).astype(np.float32)
    scale, zp = scale_zero_point(w, symmetric=True, per_channel=False)
    assert scale.item() == 1 / 16 and zp.item() == 0
    q = quantize(w, scale, zp, symmetric=True)
    expected = np.clip(np.where(k % 2 == 0, k, k + 1), -128, 127)  # k + 0.5 goes to the even neighbour
    assert np.array_equal(q[:-1], expected) and q[-1] == 127  # 127.5 -> 128, clamped
    half = dict(zip(k.tolist(), q[:-1].tolist()))
    assert (half[0], half[1], half[-1], half[-2]) == (0, 2, 0, -2)  # 0.5, 1.5, -0.5, -1.5
    _check_per_tensor(torch.from_numpy(w), symmetric=True)
    # affine: [-8, 127/16] spans 255/16, scale 1/16 and zero point 128; the ties are k + 128.5
    w = np.concatenate([ties, [-8.0, 127 / 16]]).astype(np.float32)
    scale, zp = scale_zero_point(w, symmetric=False, per_channel=False)
    assert scale.item() == 1 / 16 and zp.item() == 128
    q = quantize(w, scale, zp, symmetric=False).astype(np.int64)
    assert np.array_equal(q[:-2], np.where((k + 128) % 2 == 0, k + 128, k + 129))
    _check_per_tensor(torch.from_numpy(w), symmetric=False)
    # per channel: every row its own ties
    rows = torch.from_numpy(np.stack([w, 2 * w, w / 4]))
    _check_per_channel(rows, symmetric=False, axis=0)
    _check_per_channel(rows, symmetric=True, axis=0)


@pytest.mark.parametrize("symmetric", [True, False], ids=["qint8-symmetric", "quint8-affine"])
def test_ties_at_observer_scales_and_arbitrary_parameters(symmetric):
    rng = np.random.default_rng(7)
    lo, hi = quant_range(8, symmetric=symmetric)
    for _ in range(20):
        scale = np.float32(rng.uniform(1e-3, 0.1))
        zp = 0 if symmetric else int(rng.integers(0, 256))
        k = rng.integers(lo - zp, hi - zp, 300)
        w = ((k + 0.5) * scale).astype(np.float32)  # halfway, up to the float32 rounding of w and 1/scale
        w = np.concatenate([w, np.nextafter(w, np.float32(np.inf)), np.nextafter(w, np.float32(-np.inf))])
        tq = torch.quantize_per_tensor(torch.from_numpy(w), float(scale), zp, _dtype(symmetric))
        assert torch.equal(torch.from_numpy(quantize(w, scale, zp, symmetric=symmetric)), tq.int_repr())
        scales = rng.uniform(1e-3, 0.1, 3).astype(np.float32)
        zps = np.zeros(3, np.int64) if symmetric else rng.integers(0, 256, 3)
        rows = np.stack([w, w * 3, -w]).astype(np.float32)
        tq = torch.quantize_per_channel(torch.from_numpy(rows), torch.from_numpy(scales).double(),
                                        torch.from_numpy(zps), 0, _dtype(symmetric))
        assert torch.equal(torch.from_numpy(quantize(rows, scales, zps, axis=0, symmetric=symmetric)), tq.int_repr())
        _check_per_tensor(torch.from_numpy(w), symmetric)
        _check_per_channel(torch.from_numpy(rows), symmetric, 0)


def test_zero_point_added_before_rounding_per_tensor_and_per_channel():
    # w / scale rounds to -15.5 in float32 (two roundings: 4.5 -> 4 per channel), but the exact product is
    # not a tie: per tensor torch's fused multiply-add rounds once and lands above 4.5 -> 5
    w, scale, zp = np.float32(-0.07837387), np.float32(0.005056379), 20
    assert w * (np.float32(1) / scale) == np.float32(-15.5)
    x = np.array([w], np.float32)
    per_tensor = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zp, torch.quint8).int_repr()
    per_channel = torch.quantize_per_channel(torch.from_numpy(x[None]), torch.tensor([float(scale)], dtype=torch.float64),
                                             torch.tensor([zp]), 0, torch.quint8).int_repr()
    assert per_tensor.item() == 5 and per_channel.item() == 4
    assert quantize(x, scale, zp, symmetric=False).item() == 5
    assert quantize(x[None], np.array([scale]), np.array([zp]), axis=0, symmetric=False).item() == 4
    # adding the zero point after rounding would give neither torch value here: 100.49999 -> 100 + 123
    w, scale, zp = np.float32(2.0247233), np.float32(0.020146502), 123
    assert np.rint(w * (np.float32(1) / scale)) + zp == 223
    assert quantize(np.array([w]), scale, zp, symmetric=False).item() == 224
    tq = torch.quantize_per_tensor(torch.tensor([w.item()]), float(scale), zp, torch.quint8)
    assert tq.int_repr().item() == 224


def test_zero_range_uses_the_observer_eps():
    w = torch.zeros(4, 6)
    for symmetric in (True, False):
        scale, zp = scale_zero_point(w, symmetric=symmetric, per_channel=False)
        assert scale.item() == EPS == torch.finfo(torch.float32).eps and zp.item() == 0
        assert not quantize(w, scale, zp, symmetric=symmetric).any()
        _check_per_tensor(w, symmetric)
        _check_per_channel(w, symmetric, 1)


@pytest.mark.parametrize("bits", range(1, 8))
def test_fewer_bits_follow_the_observers_quant_range(bits):
    """Below 8 bits: torch's observers with quant_min/quant_max of that width give the same parameters.

    torch.quantize_per_tensor clamps to the 8-bit dtype, not to the observer's range (the largest weight,
    at qmax + 0.5, rounds to qmax + 1 there), so its codes are compared after clamping; fake_quantize,
    which clamps to the range, equals dequantize(quantize(w)).
    """
    for seed in range(3):
        w = _weights(seed, (6, 20))
        for symmetric, narrow in ((True, False), (True, True), (False, False)):
            if narrow and bits == 1:
                continue
            qmin, qmax = quant_range(bits, symmetric=symmetric, narrow=narrow)
            assert (qmin, qmax) == ((-(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1) if symmetric
                                    else (0, 2**bits - 1))
            obs = _observer(symmetric, qrange=(qmin, qmax))
            obs(w)
            t_scale, t_zp = obs.calculate_qparams()
            scale, zp = scale_zero_point(w, bits, symmetric=symmetric, per_channel=False, narrow=narrow)
            assert scale.item() == t_scale.item() and zp.item() == t_zp.item()
            q = quantize(w, scale, zp, bits, symmetric=symmetric, narrow=narrow)
            assert q.min() >= qmin and q.max() <= qmax
            tq = torch.quantize_per_tensor(w, t_scale.item(), int(t_zp.item()), _dtype(symmetric)).int_repr()
            assert torch.equal(torch.from_numpy(q), tq.clamp(qmin, qmax))
            fake = torch.fake_quantize_per_tensor_affine(w, t_scale.item(), int(t_zp.item()), qmin, qmax)
            assert torch.equal(torch.from_numpy(dequantize(q, scale, zp)), fake)
            obs = _observer(symmetric, axis=1, qrange=(qmin, qmax))
            obs(w)
            t_scales, t_zps = obs.calculate_qparams()
            scales, zps = scale_zero_point(w, bits, symmetric=symmetric, per_channel=True, axis=1, narrow=narrow)
            assert torch.equal(torch.from_numpy(scales), t_scales) and np.array_equal(zps, t_zps.numpy())


def test_narrow_symmetric_is_max_over_127():
    w = np.array([-2.54, 0.3, 1.0], np.float32)
    scale, zp = scale_zero_point(w, symmetric=True, per_channel=False, narrow=True)
    assert scale.item() == np.float32(np.float32(2.54) / np.float32(127)) and zp.item() == 0
    assert quantize(w, scale, zp, symmetric=True, narrow=True).tolist()[0] == -127
    default, _ = scale_zero_point(w, symmetric=True, per_channel=False)
    assert default.item() == np.float32(np.float32(2.54) / np.float32(127.5))  # torch's default: 255 / 2


@pytest.mark.parametrize("bits", [0, 9, 16, -1, True, 8.0])
def test_bits_outside_1_to_8_refused(bits):
    w = np.ones(4, np.float32)
    with pytest.raises(FxpError, match=r"bits must be in 1\.\.8, got"):
        scale_zero_point(w, bits, symmetric=True, per_channel=False)
    with pytest.raises(FxpError, match=r"bits must be in 1\.\.8, got"):
        quantize(w, 1.0, 0, bits, symmetric=True)
    with pytest.raises(FxpError, match=r"bits must be in 1\.\.8, got"):
        uniform_bytes(10, bits)


def test_bad_inputs_refused_in_one_line():
    w = np.ones((3, 4), np.float32)
    cases = [
        lambda: scale_zero_point(np.array([1.0, np.nan]), symmetric=True, per_channel=False),
        lambda: scale_zero_point(np.zeros(0), symmetric=True, per_channel=False),
        lambda: scale_zero_point(w, symmetric=True, per_channel=True, axis=2),
        lambda: quant_range(8, symmetric=False, narrow=True),
        lambda: quant_range(1, symmetric=True, narrow=True),
        lambda: quantize(w, np.ones(4, np.float32), np.zeros(4, np.int32), axis=0, symmetric=True),
        lambda: quantize(w, np.ones(3, np.float32), np.zeros(3, np.int32), symmetric=True),
        lambda: quantize(w, 0.0, 0, symmetric=True),
        lambda: quantize(w, 1.0, 300, symmetric=False),
        lambda: quantize(w, 1.0, 0.5, symmetric=False),
        lambda: dequantize(w, 1.0, 0),
        lambda: uniform_bytes(-1, 8),
        lambda: uniform_bytes(10, 8, 0),
    ]
    for case in cases:
        with pytest.raises(FxpError) as e:
            case()
        assert "\n" not in str(e.value) and ";" in str(e.value)


def test_torch_tensors_with_grad_are_read():
    w = torch.randn(5, 7, requires_grad=True)
    scale, zp = scale_zero_point(w, symmetric=False, per_channel=True)
    assert scale.shape == (5,) and zp.shape == (5,) and zp.dtype == np.int32
    assert quantize(w, scale, zp, axis=0, symmetric=False).dtype == np.uint8


def test_uniform_bytes_exact():
    assert uniform_bytes(1000, 8) == 1000 + 8  # the codes + one float32 scale and int32 zero point
    assert uniform_bytes(10, 3, 2) == 4 + 16  # 30 bits -> 4 bytes, two channels
    assert uniform_bytes(8 * 3 * 5 * 5, 4, channels=8) == 300 + 64
    assert uniform_bytes(0, 1) == 8


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_fake_quantize_equals_torch_fake_quantize(bits, scheme):
    """The QAT forward's weights (fake_quantize: uniform's own scale_zero_point, quantize, dequantize) are
    torch.fake_quantize_per_channel_affine's / per_tensor_affine's on the same parameters, element for element."""
    kw = scheme_args(scheme)
    qmin, qmax = quant_range(bits, **kw)
    for seed in range(4):
        w = _weights(seed, (12, 40))
        scales, zps = scale_zero_point(w, bits, per_channel=True, **kw)
        torch_fq = torch.fake_quantize_per_channel_affine(w, torch.from_numpy(scales), torch.from_numpy(zps), 0,
                                                          qmin, qmax)
        assert torch.equal(torch.from_numpy(fake_quantize(w, bits, per_channel=True, **kw)), torch_fq)
        scale, zp = scale_zero_point(w, bits, per_channel=False, **kw)
        torch_fq = torch.fake_quantize_per_tensor_affine(w, scale.item(), int(zp), qmin, qmax)
        assert torch.equal(torch.from_numpy(fake_quantize(w, bits, per_channel=False, **kw)), torch_fq)


def test_torch_fake_quantize_adds_the_zero_point_after_rounding():
    # the tie of test_zero_point_added_before_rounding...: quantize_per_tensor (and uniform) give 224,
    # torch's fake_quantize rounds 100.49999 first, then adds 123: 223. uniform follows quantize_per_channel.
    w, scale, zp = np.float32(2.0247233), np.float32(0.020146502), 123
    x = torch.tensor([[w.item()]])
    fq = torch.fake_quantize_per_tensor_affine(x, float(scale), zp, 0, 255)
    assert fq.item() == np.float32(100) * scale
    assert quantize(x.numpy(), scale, zp, symmetric=False).item() == 224
    # so fxp's fake quantization (quantize_per_tensor's codes) lands a step above torch's on this tie
    ours = dequantize(quantize(x.numpy(), scale, zp, symmetric=False), scale, zp)
    assert ours.item() == np.float32(101) * scale and ours.item() != fq.item()


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_snapped_weights_are_a_fixed_point_with_the_same_codes(bits, per_channel, scheme):
    """snap(w) quantizes to itself (same codes, and dequantized back to the same floats, ==), and its codes are
    those of w's first fake quantization: only the scale's last bits settle."""
    if bits == 1 and scheme == "symmetric":
        return
    kw = scheme_args(scheme)
    for seed in range(6):
        w = _weights(seed, (16, 30)).numpy()
        keep = w.copy()
        s = snap(w, bits, per_channel=per_channel, **kw)
        assert np.array_equal(w, keep)  # the input is left alone
        assert np.array_equal(fake_quantize(s, bits, per_channel=per_channel, **kw), s)
        q, scale, zp = codes(s, bits, per_channel=per_channel, **kw)
        assert np.array_equal(dequantize(q, scale, zp, 0 if per_channel else None), s)
        assert np.array_equal(q, codes(w, bits, per_channel=per_channel, **kw)[0])
        assert len(np.unique(s[0])) <= 2**bits


def test_unknown_scheme_refused():
    with pytest.raises(FxpError, match="uniform scheme 'narrow' is not known"):
        scheme_args("narrow")
