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
- ``weight_range``: the sum over output channels of ``(max(w, 0) - min(w, 0))**2``, the range a uniform
  quantizer divides into its levels (:mod:`fxp.compress.uniform`; it always holds 0). Pulling a channel's
  max and min together shrinks its step, so its weights sit on a finer grid at the same bits. Per channel,
  because the quantizer is per channel: each channel's step is its own range over ``2**b - 1``, and a
  per-layer range would pull only the one channel holding the layer's extreme. Its gradient is
  ``2 (max - min)`` on the channel's largest weight and ``-2 (max - min)`` on its smallest (shared
  equally among ties, as ``amax``/``amin`` share it; on a uniform grid the weights at the top code tie).

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


def channel_ranges(w: torch.Tensor) -> torch.Tensor:
    """Per output channel (dim 0) of ``w``: ``max(w, 0) - min(w, 0)``, the range its uniform grid spans."""
    rows = w.flatten(1)
    return rows.amax(1).clamp(min=0) - rows.amin(1).clamp(max=0)


def weight_range(model: nn.Module) -> torch.Tensor:
    """``sum (max - min)**2`` over every output channel of the linear and conv2d layers (module docstring)."""
    return sum(channel_ranges(m.weight).pow(2).sum() for m in prunable(model).values())


# by fxp.train.Recipe's field names
REGULARIZERS = {"l1": l1, "group_in": group_in, "group_out": group_out, "tsrelu": binarizing, "gate_l1": gate_l1,
                "depth_l1": depth_l1, "binary": binary, "weight_range": weight_range}


def penalty(model: nn.Module, strengths: dict[str, float]):
    """The weighted sum of the regularizers with a nonzero strength (a tensor), or None where there are none."""
    terms = [s * REGULARIZERS[name](model) for name, s in strengths.items() if s]
    return sum(terms) if terms else None
