"""Neurons: which weights belong to each hidden neuron, and removing the dead ones from the model.

A hidden neuron is an output of a linear layer, or an output channel of a convolution, that a later
linear or conv2d layer reads. Its **incoming** group is the row (filter) that computes it and its bias;
its **outgoing** group is what the next compute layer reads of it: one column of a linear layer, one
input channel of a convolution, or the block of ``height x width`` columns its channel becomes after
flatten. The group-lasso regularizers (:mod:`fxp.compress.regularizers`) push whole groups to zero.

A neuron is **dead** when its incoming group is all zero (it computes ``f(0) = 0``: ReLU, pooling and
flatten all map zero to zero, and so does every fixed-point format) or its outgoing group is (nothing
reads it). Removing a dead neuron therefore leaves every output of the network unchanged, exactly:
:func:`remove_dead` builds the model with the smaller layers and copies the surviving weights, so
``fxp export`` writes the smaller layers and ``fxp gen`` builds smaller hardware.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from fxp.compress.prune import prunable
from fxp.errors import FxpError
from fxp.layers import FxAvgPool2d, FxFlatten, FxMaxPool2d, FxQuant, FxReLU

# Modules that may sit between a neuron and the layer that reads it: each maps 0 to 0 channel by channel (as
# does any module class that says so with ``maps_zero_to_zero = True``, e.g. fxp.compress.tsrelu.TsReLU)
_PASS_ZERO = (FxReLU, FxMaxPool2d, FxAvgPool2d, FxFlatten, FxQuant, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
              nn.Flatten, nn.Identity)


@dataclass
class Link:
    """The hidden neurons of ``producer`` (a layer name) and how ``consumer`` reads them.

    Members: ``producer``, ``consumer`` (module names), ``span``: the consumer's columns per neuron (1,
    or ``height x width`` where a convolution's channels are flattened into a linear layer).
    """

    producer: str
    consumer: str
    span: int

    def incoming(self, layers: dict[str, nn.Module]) -> torch.Tensor:
        """Each neuron's incoming weights and bias, one row per neuron (a view into the parameters)."""
        m = layers[self.producer]
        rows = m.weight.flatten(1)
        return rows if m.bias is None else torch.cat([rows, m.bias[:, None]], 1)

    def outgoing(self, layers: dict[str, nn.Module]) -> torch.Tensor:
        """Each neuron's outgoing weights, one row per neuron."""
        w = layers[self.consumer].weight
        if w.dim() == 4:  # the neuron is an input channel of a convolution
            return w.transpose(0, 1).flatten(1)
        return w.t().reshape(-1, self.span * w.shape[0]) if self.span > 1 else w.t()


def links(model: nn.Module) -> list[Link]:
    """The producer → consumer pairs of the model's compute layers, in order."""
    layers = prunable(model)
    names = list(layers)
    mods = dict(model.named_children())
    order = list(mods)
    out = []
    for a, b in zip(names, names[1:], strict=False):
        between = [mods[n] for n in order[order.index(a) + 1 : order.index(b)]]
        bad = [type(m).__name__ for m in between if not (isinstance(m, _PASS_ZERO) or getattr(m, "maps_zero_to_zero", False))]
        if bad:
            raise FxpError(f"{bad[0]} between {a} and {b} does not map zero to zero; neuron pruning takes models "
                           "whose layers are joined by ReLU, pooling and flatten only")
        produced = layers[a].weight.shape[0]
        reads = layers[b].weight.shape[1]
        if reads % produced:
            raise FxpError(f"{b} reads {reads} inputs, not a multiple of {a}'s {produced} outputs; the model "
                           "is not one fxp.models builds")
        span = reads // produced if layers[b].weight.dim() == 2 else 1
        out.append(Link(a, b, span))
    return out


def group_norms(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Per producer layer: the L2 norm of every hidden neuron's incoming and outgoing group."""
    layers = prunable(model)
    with torch.no_grad():
        return {ln.producer: {"in": ln.incoming(layers).norm(dim=1), "out": ln.outgoing(layers).norm(dim=1)}
                for ln in links(model)}


def live_neurons(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per producer layer: which hidden neurons are alive (neither group all zero)."""
    return {n: (g["in"] != 0) & (g["out"] != 0) for n, g in group_norms(model).items()}


@torch.no_grad()
def zero_weak(model: nn.Module, threshold: float) -> dict[str, int]:
    """Zero both groups of every hidden neuron whose incoming or outgoing norm is at most ``threshold``
    (which kills it); the number killed per layer."""
    layers, killed = prunable(model), {}
    for ln in links(model):
        norms_in, norms_out = ln.incoming(layers).norm(dim=1), ln.outgoing(layers).norm(dim=1)
        weak = (norms_in <= threshold) | (norms_out <= threshold)
        _zero_neurons(layers, ln, weak)
        killed[ln.producer] = int(weak.sum())
    return killed


def _zero_neurons(layers: dict[str, nn.Module], ln: Link, which: torch.Tensor) -> None:
    p, c = layers[ln.producer], layers[ln.consumer]
    p.weight[which] = 0
    if p.bias is not None:
        p.bias[which] = 0
    c.weight[:, _columns(ln, which)] = 0


def _columns(ln: Link, neurons: torch.Tensor) -> torch.Tensor:
    """The consumer's input columns (or channels) of the given neurons: a bool mask over its inputs."""
    return neurons.repeat_interleave(ln.span) if ln.span > 1 else neurons


@torch.no_grad()
def remove_dead(model: nn.Module) -> tuple[nn.Module, dict[str, dict]]:
    """The model without its dead hidden neurons (see the module docstring), and per layer the neurons
    before and after. The model's spec, formats and scales carry over; the new model is in eval mode."""
    from fxp.models import build

    layers = prunable(model)
    live = live_neurons(model)
    spec = copy.deepcopy(model.spec)
    compute = [i for i, layer in enumerate(spec["layers"]) if layer["type"] in ("linear", "conv2d")]
    if len(compute) != len(layers):
        raise FxpError("the model's spec does not match its layers; neuron removal takes models built by fxp.models")
    for i, name in zip(compute, layers, strict=True):
        if name in live:
            if not live[name].any():
                raise FxpError(f"every neuron of {name} is dead, so the network's output no longer depends on its "
                               "input; prune less (a lower threshold or regularizer strength, or a lower --gate-l1)")
            spec["layers"][i]["out"] = int(live[name].sum())
    state = model.state_dict()
    for ln in links(model):
        keep = live[ln.producer]
        for key in (f"{ln.producer}.weight", f"{ln.producer}.bias"):
            if key in state:
                state[key] = state[key][keep]
        state[f"{ln.consumer}.weight"] = state[f"{ln.consumer}.weight"][:, _columns(ln, keep)]
    cfg = next(m.cfg for m in layers.values() if hasattr(m, "cfg"))
    smaller = build(spec, cfg)
    smaller.load_state_dict(state)
    smaller.eval()
    if hasattr(model, "config"):
        smaller.config = model.config
    return smaller, {n: {"before": len(v), "after": int(v.sum())} for n, v in live.items()}
