"""Regularizers that drive weights, and whole neurons, to zero before pruning.

- ``l1``: the sum of ``|w|`` over the linear and conv2d weights. Its gradient, ``sign(w)``, pulls every
  weight towards zero at the same rate, so small ones reach it (Han et al. 2015 compare L1 and L2
  before pruning: L1 leaves more weights near zero).
- ``group_in`` (DropNeuron's li, Pan et al. 2016): the sum over hidden neurons of the L2 norm of each
  neuron's incoming weights (and bias).
- ``group_out`` (lo): the same over each neuron's outgoing weights.
- ``binary``: ``W²(1 - W²)`` on a binarized model's latent weights, which then compute as they are
  (``BinaryLinear.latent``) and are rounded to ±1 after training: binary weights by a regularizer
  instead of the straight-through estimator.

A group norm's gradient is ``w / ||w||``: the whole group shrinks together and a group can reach zero
as one, which is what lets :func:`fxp.compress.neurons.zero_weak` remove a neuron. Groups are those of
:mod:`fxp.compress.neurons`. Strengths are per weight or per group, added to the cross-entropy loss.
The tsReLU gates' penalties (``tsrelu``, ``gate_l1``, ``depth_l1``) are :mod:`fxp.compress.tsrelu`'s.
"""

from __future__ import annotations

import torch
from torch import nn

from fxp.compress.neurons import links
from fxp.compress.prune import prunable
from fxp.compress.tsrelu import binarizing, depth_l1, gate_l1


def l1(model: nn.Module) -> torch.Tensor:
    return sum(m.weight.abs().sum() for m in prunable(model).values())


def group_in(model: nn.Module) -> torch.Tensor:
    layers = prunable(model)
    return sum(ln.incoming(layers).norm(dim=1).sum() for ln in links(model))


def group_out(model: nn.Module) -> torch.Tensor:
    layers = prunable(model)
    return sum(ln.outgoing(layers).norm(dim=1).sum() for ln in links(model))


def binary(model: nn.Module) -> torch.Tensor:
    """``sum W^2 (1 - W^2)`` over the latent weights of binary layers: zero at -1, 0 and +1."""
    return sum((m.weight**2 * (1 - m.weight**2)).sum() for m in model.modules() if hasattr(m, "latent"))


# by fxp.train.Recipe's field names
REGULARIZERS = {"l1": l1, "group_in": group_in, "group_out": group_out, "tsrelu": binarizing, "gate_l1": gate_l1,
                "depth_l1": depth_l1, "binary": binary}


def penalty(model: nn.Module, strengths: dict[str, float]):
    """The weighted sum of the regularizers with a nonzero strength (a tensor), or None where there are none."""
    terms = [s * REGULARIZERS[name](model) for name, s in strengths.items() if s]
    return sum(terms) if terms else None
