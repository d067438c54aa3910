"""``fixed`` mode is fixed point: gradients, parameters and momentum lie on their formats' grids while training."""

import torch
import torch.nn.functional as F

from fxp.datasets import load
from fxp.layers import FixedPointSGD, FxConfig, FxQuant, _FxParams, snap_model, step_trackers
from fxp.models import build


def off_grid(t: torch.Tensor, fmt) -> int:
    """How many values of ``t`` are not ``raw * 2**-frac`` with an integer raw in the format's range."""
    raw = t.detach().double() * 2.0**fmt.frac_bits
    bad = (raw != raw.round()) | (raw < fmt.raw_min) | (raw > fmt.raw_max)
    return int(bad.sum())


def test_gradients_parameters_and_momentum_stay_on_their_grids():
    torch.manual_seed(0)
    data = load("digits")
    model = build("digits_mlp", FxConfig(mode="fixed"), seed=0)
    snap_model(model)
    opt = FixedPointSGD(model, lr=0.05, momentum=0.9, generator=torch.Generator().manual_seed(1))
    quants = {name: m for name, m in model.named_modules() if isinstance(m, FxQuant)}
    params = [(f"{mname}.{n}", getattr(m, n), t) for mname, m in model.named_modules() if isinstance(m, _FxParams)
              for n, t in m.ptrack.items()]
    assert len(quants) == 3 and len(params) == 4  # input, fc1.out, fc2.out; two weights, two biases
    seen = []  # (FxQuant name, the gradient leaving it backward, its gradient format then)

    def watch(name, q):
        def pre_hook(module, args):
            # the FxQuant's input feeds nothing else, so its gradient is exactly what _QuantAct.backward returns
            args[0].register_hook(lambda g: seen.append((name, g.detach().clone(), q.grad.fmt)))
        return pre_hook

    for name, q in quants.items():
        q.register_forward_pre_hook(watch(name, q))
    for step in range(6):
        xb, yb = data.x_train[64 * step : 64 * (step + 1)], data.y_train[64 * step : 64 * (step + 1)]
        seen.clear()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb.clone().requires_grad_(True)), yb).backward()
        assert sorted(n for n, *_ in seen) == sorted(quants), step
        for name, g, fmt in seen:
            assert g.abs().max() > 0 and off_grid(g, fmt) == 0, (step, name, fmt)
        before = [p.detach().clone() for _, p, _ in params]
        opt.step()
        for (name, p, t), old in zip(params, before):
            assert not torch.equal(p, old), (step, name)  # it trained: no grid is trivially kept by standing still
            assert off_grid(p, t.fmt) == 0, (step, name, t.fmt)
            state = opt.state[p]
            assert off_grid(state["buf"], state["buf_track"].fmt) == 0, (step, name, "momentum")
        step_trackers(model)
