"""The overflow-rate rule of Courbariaux et al. on crafted data."""

import pytest
import torch

from fxp import Format, FxpError, ScaleTracker
from fxp.dynamic import max_abs_frac_bits


@pytest.mark.parametrize("m,word,expect", [(1.0, 8, 6), (0.99, 8, 7), (127.0, 8, 0), (127.5, 8, -1), (3.0, 16, 13), (1e-3, 8, 16)])
def test_max_abs_initializer(m, word, expect):
    f = max_abs_frac_bits(m, word)
    assert f == expect
    fmt = Format(word, f)
    assert fmt.max >= m and Format(word, f + 1).max < m  # fits, and is the tightest that fits


def _data(n, n_big, big, small=0.1):
    x = torch.full((n,), small)
    x[:n_big] = big
    return x


def test_rule_moves_one_bit_per_interval():
    t = ScaleTracker(8, frac_bits=4, max_overflow_rate=0.01, update_interval=3)  # max = 127/16 ≈ 7.94
    assert t.fmt == Format(8, 4)
    # 2 % of values at 10 (> max): rate 0.02 > 0.01 → one more integer bit, only after 3 observations
    for i in range(3):
        moved = t.observe(_data(1000, 20, 10.0))
        assert moved == (i == 2)
    assert t.frac_bits == 3
    # now max ≈ 15.9: no overflow, but with one bit fewer (max ≈ 7.94) 2 % would overflow → keep
    for _ in range(3):
        t.observe(_data(1000, 20, 10.0))
    assert t.frac_bits == 3
    # 0.5 % reach 10: under the maximum even at frac 4 → one integer bit fewer
    for _ in range(3):
        t.observe(_data(1000, 5, 10.0))
    assert t.frac_bits == 4
    assert [h["frac_bits"] for h in t.history] == [3, 3, 4]
    assert t.history[0]["overflow_rate"] == pytest.approx(0.02)


def test_rate_counts_values_reaching_the_maximum():
    t = ScaleTracker(4, frac_bits=0, max_overflow_rate=0.0, update_interval=1)  # max 7
    t.observe(torch.tensor([7.0, -7.0, 6.9, 3.4]))  # two values reach |7|: rate 0.5 > 0
    assert t.frac_bits == -1
    t.observe(torch.tensor([3.0, 3.4, -3.4]))  # max 14: nothing reaches 14, nor 7 → one bit fewer
    assert t.frac_bits == 0


def test_tracker_quantizes_and_initializes_from_data():
    t = ScaleTracker(8, update_interval=100)
    q = t.quantize(torch.tensor([0.5, -3.0, 2.9]))
    assert t.fmt == Format(8, 5) and q.fmt == t.fmt and q.overflows == 0


def test_state_round_trip():
    t = ScaleTracker(10, frac_bits=2, update_interval=2)
    for _ in range(5):
        t.observe(torch.randn(100) * 30)
    u = ScaleTracker(4)
    u.load_state_dict(t.state_dict())
    assert u.state_dict() == t.state_dict()


def test_bad_arguments():
    with pytest.raises(FxpError, match=r"max_overflow_rate must be in \[0, 1\)"):
        ScaleTracker(8, max_overflow_rate=1.5)
    with pytest.raises(FxpError, match="update_interval must be a whole number >= 1"):
        ScaleTracker(8, update_interval=0)
    with pytest.raises(FxpError, match="word_bits must be in 1..64"):
        ScaleTracker(0)
    with pytest.raises(FxpError, match="has no scale yet"):
        _ = ScaleTracker(8).fmt
