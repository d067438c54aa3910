"""The golden model and the PyTorch integer path against a slow loop-by-loop reference of the spec.

``test_golden.py`` checks the two implementations against each other; a mistake both make the same
way (padding, tie rounding) passes there and is caught here.
"""

import numpy as np
import pytest
from descriptions import random_cnn
from reference import run_description

from fxp import torch_int
from sim import golden

# (zero_points, pow2, conv relu, dense relu, S = 0 on every other channel with 16-bit outputs)
CONFIGS = [(True, True, True, False, False), (True, False, False, True, False), (True, True, False, False, True),
           (False, False, True, True, True)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "zp{}-pow2{}-relu{}{}-s0{}".format(*map(int, c)))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_golden_and_torch_equal_the_reference(padding, stride, config):
    zero_points, pow2, relu, fc_relu, zero_shift = config
    seed = 10 * padding + stride
    model = random_cnn(seed, zero_points, pow2, padding=padding, stride=stride, relu=relu, fc_relu=fc_relu,
                       out_fmt="s16.4" if zero_shift else "s8.3", zero_shift=zero_shift)
    x = np.random.default_rng(seed).uniform(-5, 5, (3, 2, 9, 9))
    g, t = golden.run(model, x), [a.numpy() for a in torch_int.run(model, x)]
    for n in range(len(x)):
        want = run_description(model, x[n])
        for i, w in enumerate(want):
            where = f"image {n}, output {i} ({'input' if i == 0 else model.layers[i - 1]['name']})"
            assert g[i][n].tolist() == w, f"golden differs from the reference at {where}"
            assert t[i][n].tolist() == w, f"torch_int differs from the reference at {where}"
    # not saturated into constants (a dense layer with S = 0 on 16-bit inputs saturates: only its conv is checked)
    assert len(np.unique(g[1])) > 10 and (zero_shift or len(np.unique(g[-1])) > 3)
    if zero_shift:
        s0 = g[1][:, 0]  # channel 0 has S = 0
        assert model.arrays["conv1.s"][0] == 0 and ((s0 > s0.min()) & (s0 < 2**15 - 1)).sum() > s0.size // 4
