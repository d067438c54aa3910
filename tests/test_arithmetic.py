"""Exact arithmetic: result formats follow APyTypes, values equal big-integer references."""

from fractions import Fraction

import apytypes as apy  # pinned in the test extras: a broken install must fail, not skip
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fxp import Format, FxpError, FxTensor, quantize


def random_fx(rng, fmt, shape):
    raw = rng.integers(fmt.raw_min, fmt.raw_max, shape, endpoint=True, dtype=np.int64)
    raw.flat[0] = fmt.raw_min  # the extremes are where widths go wrong
    raw.flat[-1] = fmt.raw_max
    return FxTensor(torch.from_numpy(raw), fmt)


def to_apy(x: FxTensor):
    return apy.APyFixedArray(x.to_bits().astype(np.uint64).tolist(), int_bits=x.fmt.int_bits, frac_bits=x.fmt.frac_bits)


def values(x: FxTensor) -> list:
    return [Fraction(int(r)) / Fraction(2) ** x.fmt.frac_bits for r in x.raw.flatten().tolist()]


def same(ours: FxTensor, ref) -> None:
    assert (ours.fmt.int_bits, ours.fmt.frac_bits) == (ref.int_bits, ref.frac_bits)
    assert ours.to_bits().astype(np.uint64).flatten().tolist() == np.asarray(ref.to_bits(), dtype=np.uint64).flatten().tolist()


signed_formats = st.builds(Format, st.integers(2, 20), st.integers(-6, 24))


@given(signed_formats, signed_formats, st.integers(0, 2**32))
def test_elementwise_vs_apytypes(fa, fb, seed):
    rng = np.random.default_rng(seed)
    a, b = random_fx(rng, fa, (3, 5)), random_fx(rng, fb, (3, 5))
    A, B = to_apy(a), to_apy(b)
    same(a + b, A + B)
    same(a - b, A - B)
    same(a * b, A * B)
    same(-a, -A)


@given(signed_formats, signed_formats, st.integers(1, 70), st.integers(0, 2**32))
def test_matmul_and_sum_vs_apytypes(fa, fb, k, seed):
    rng = np.random.default_rng(seed)
    a, b = random_fx(rng, fa, (4, k)), random_fx(rng, fb, (k, 3))
    same(a @ b, to_apy(a) @ to_apy(b))
    same(a.sum(), to_apy(a).sum())
    same(a.sum(1), to_apy(a).sum(1))


@pytest.mark.parametrize("k", [1, 7, 256, 1000])
def test_int8_matmul_fast_path_exact(k):
    rng = np.random.default_rng(k)
    a, b = random_fx(rng, Format(8, 0), (33, k)), random_fx(rng, Format(8, 0), (k, 17))
    c = a @ b
    assert c.fmt.word_bits <= 32
    ref = a.raw.long() @ b.raw.long()  # int64 matmul: exact
    assert torch.equal(c.raw.long(), ref)


def test_unsigned_and_mixed_against_fractions():
    rng = np.random.default_rng(5)
    for fa, fb in [(Format(8, 3, False), Format(6, 1, False)), (Format(8, 3, False), Format(6, -2)),
                   (Format(5, 0), Format(7, 4, False))]:
        a, b = random_fx(rng, fa, (40,)), random_fx(rng, fb, (40,))
        for op in ("+", "-", "*"):
            r = {"+": a + b, "-": a - b, "*": a * b}[op]
            expect = [{"+": x + y, "-": x - y, "*": x * y}[op] for x, y in zip(values(a), values(b))]
            assert values(r) == expect
            assert r.fmt.signed == (fa.signed or fb.signed or op == "-")


def test_wide_results_refused_or_exact():
    a = FxTensor(torch.tensor([2**31 - 1, -(2**31)]), Format(32, 0))
    p = a * a
    assert p.fmt == Format(64, 0) and p.raw.tolist() == [(2**31 - 1) ** 2, 2**62]
    with pytest.raises(FxpError, match=r"\* needs a 65-bit result \(s65.0\), more than the 64 bits .* requantize an operand"):
        p * FxTensor(torch.tensor([-1, -1]), Format(1, 0))
    s40 = FxTensor(torch.tensor([[2**39 - 1] * 3]), Format(40, 0))
    c = s40 @ FxTensor(torch.tensor([[2**20 - 1]] * 3), Format(21, 0))
    assert c.fmt.word_bits == 40 + 21 + 2 and c.raw.item() == 3 * (2**39 - 1) * (2**20 - 1)


def test_raw_constructor_checks_range():
    with pytest.raises(FxpError, match=r"raw values -129..3 do not fit s8.0 \(raw range -128..127\)"):
        FxTensor(torch.tensor([-129, 3]), "s8.0")
    with pytest.raises(FxpError, match="raw must hold integers"):
        FxTensor(torch.tensor([1.0]), "s8.0")


def test_to_bits_patterns():
    q = quantize(torch.tensor([-1.0, 0.5, -0.5]), "s4.1")
    assert q.to_bits().tolist() == [0b1110, 0b0001, 0b1111] and q.to_bits().dtype == np.uint8
    q64 = FxTensor(torch.tensor([-1, -(2**63)]), Format(64, 0))
    assert q64.to_bits().tolist() == [2**64 - 1, 2**63]
