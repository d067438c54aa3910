"""Architecture learning with tsReLU gates (after Srinivas and Babu, 2016): training decides how many neurons
each layer keeps and which layers need their nonlinearity at all.

A tsReLU replaces a ReLU. Each neuron ``j`` has a gate ``w_j`` (is the neuron kept?) and the layer one gate
``d`` (is the nonlinearity kept?), all in ``[0, 1]``::

    f(x)_j = w_j * x_j              if x_j >= 0
             w_j * (1 - d) * x_j    otherwise

so ``d = 1`` is a ReLU and ``d = 0`` the identity: the layer is linear. The penalties ``w (1 - w)`` and
``d (1 - d)`` push each gate to 0 or 1 (``Recipe.tsrelu`` weighs them); ``Recipe.gate_l1`` adds ``w`` and
``Recipe.depth_l1`` adds ``d``: pulls towards fewer neurons and fewer nonlinearities that the
cross-entropy resists where they matter. The gates are clipped to ``[0, 1]`` after every step.

The two pulls are separate because the gates behave differently. A neuron gate trades against the
weights that read the neuron (``w W`` is what matters), so a pull stronger than the binarizing push at
``w = 1`` lowers every gate together while the next layer's weights grow to make up for it: on LeNet-5,
``gate_l1`` above ``tsrelu`` left 1 to 17 of fc1's 120 gates above 0.5 after one or two epochs at 90 %
accuracy, so reading them at 0.5 would remove the layer. Below ``tsrelu`` a gate at 1 only falls where
the cross-entropy pushes it. A layer's ``d`` has no such partner, so ``depth_l1`` above ``tsrelu`` turns
off exactly the nonlinearities the loss does not defend (fc2's in LeNet-5, within an epoch).

:mod:`fxp.compress.architecture` reads the gates at 0.5 and builds the plain model they describe.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fxp.errors import FxpError
from fxp.layers import FxConfig, FxQuant, frac_of, tag


class TsReLU(nn.Module):
    """The gated ReLU of the module docstring, over ``features`` neurons (channels of a 4-D input).

    Members: ``gates`` (one per neuron), ``depth`` (the layer's ``d``), ``out`` (the output's
    :class:`~fxp.layers.FxQuant`: the gates move values off the input's grid).
    """

    maps_zero_to_zero = True  # so a neuron behind it can be removed (fxp.compress.neurons)

    def __init__(self, features: int, cfg: FxConfig) -> None:
        super().__init__()
        self.gates = nn.Parameter(torch.ones(features))
        self.depth = nn.Parameter(torch.ones(()))
        self.out = FxQuant(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = torch.where(x >= 0, x, (1 - self.depth) * x) * self.gates.view(shape)
        return self.out(tag(y, frac_of(x)))

    @torch.no_grad()
    def post_step(self) -> None:
        self.gates.clamp_(0, 1)
        self.depth.clamp_(0, 1)


def gated(model: nn.Module) -> list[tuple[str, TsReLU]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TsReLU)]


def binarizing(model: nn.Module) -> torch.Tensor:
    """``sum w (1 - w) + sum d (1 - d)`` over the tsReLU gates."""
    return sum((m.gates * (1 - m.gates)).sum() + m.depth * (1 - m.depth) for _, m in gated(model))


def gate_l1(model: nn.Module) -> torch.Tensor:
    """``sum w`` over the neuron gates (in [0, 1]: their L1 norm)."""
    return sum(m.gates.sum() for _, m in gated(model))


def depth_l1(model: nn.Module) -> torch.Tensor:
    """``sum d`` over the layers' nonlinearity gates."""
    return sum(m.depth for _, m in gated(model))


def with_tsrelu(spec: dict) -> dict:
    """The model spec with every ReLU a tsReLU."""
    out = copy.deepcopy(spec)
    if not any(layer["type"] == "relu" for layer in out["layers"]):
        raise FxpError(f"model {spec.get('name', '?')} has no ReLU for tsReLU gates to replace; use a model with "
                       "ReLUs (e.g. lenet5, lenet300)")
    for layer in out["layers"]:
        if layer["type"] == "relu":
            layer["type"] = "tsrelu"
    return out
