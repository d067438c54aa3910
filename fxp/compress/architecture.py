"""Reading the architecture that tsReLU gates (:mod:`fxp.compress.tsrelu`) describe, and building it.

:func:`learned_architecture` reads the gates at the 0.5 threshold: a neuron with ``w < 0.5`` is removed
(with the weights that fed and read it), a kept neuron's gate is folded into the weights that read it
(exact: ``w > 0`` commutes with ReLU and max-pooling), a layer with ``d >= 0.5`` gets a ReLU, and one
with ``d < 0.5`` none; two linear layers then adjacent are merged into one (``W2 W1``, ``W2 b1 + b2``).
The result is a model of plain layers that exports and builds like any other; retraining it recovers
what rounding the gates to 0 and 1 cost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fxp.compress.neurons import links, remove_dead
from fxp.compress.prune import prunable
from fxp.compress.tsrelu import TsReLU, gated
from fxp.errors import FxpError


def architecture(model: nn.Module) -> list[dict]:
    """Per tsReLU: its producer layer, the neurons the gates keep, and whether the nonlinearity stays."""
    producers = {}
    mods = list(model.named_children())
    for i, (name, m) in enumerate(mods):
        if isinstance(m, TsReLU):
            producers[name] = next(n for n, _ in reversed(mods[:i]) if n.startswith(("fc", "conv")))
    read = {ln.producer for ln in links(model)}
    out = []
    for name, m in gated(model):
        keep = m.gates.detach() >= 0.5
        out.append({"gate": name, "layer": producers[name], "neurons": int(keep.numel()), "kept": int(keep.sum()),
                    "nonlinear": bool(float(m.depth) >= 0.5), "depth_gate": float(m.depth),
                    "read_by_a_layer": producers[name] in read})
    return out


@torch.no_grad()
def learned_architecture(model: nn.Module) -> tuple[nn.Module, list[dict], list[str], dict[str, str | None]]:
    """The plain model the gates describe (see the module docstring); the per-gate record of
    :func:`architecture`, the merges done (``"fc1+fc2"``), and each compute layer's new name (None for
    the first of two merged layers: the second, renumbered, holds their product). The new model keeps
    the formats of the layers it did not merge; a merged layer's weight format is found again when it
    retrains."""
    from fxp.models import build

    record = architecture(model)
    layers = prunable(model)
    by_producer = {ln.producer: ln for ln in links(model)}
    spec = copy.deepcopy(model.spec)
    state = model.state_dict()
    for r, (gname, m) in zip(record, gated(model), strict=True):
        keep = m.gates.detach() >= 0.5
        ln = by_producer.get(r["layer"])
        if ln is None:
            raise FxpError(f"{gname} gates {r['layer']}, which no later layer reads; a tsReLU belongs between two "
                           "compute layers")
        consumer = layers[ln.consumer].weight
        scale = torch.where(keep, m.gates.detach(), torch.zeros_like(m.gates))
        # fold the gates into what reads the neurons: a removed neuron's columns become zero, so it is dead
        cols = scale.repeat_interleave(ln.span) if ln.span > 1 else scale
        shape = (1, -1) + (1,) * (consumer.dim() - 2)
        state[f"{ln.consumer}.weight"] = state[f"{ln.consumer}.weight"] * cols.view(shape)
    gates = iter(record)
    new_layers = []
    for layer in spec["layers"]:
        if layer["type"] == "tsrelu":
            if next(gates)["nonlinear"]:
                new_layers.append({"type": "relu"})
        else:
            new_layers.append(layer)
    spec["layers"] = new_layers
    state = {k: v for k, v in state.items() if not any(k.startswith(f"{g}.") for g, _ in gated(model))}
    cfg = next(m.cfg for m in layers.values())
    plain = build(spec, cfg)
    plain.load_state_dict(state)
    plain.config = getattr(model, "config", cfg)
    if all(not bool((plain.get_submodule(r["layer"]).weight != 0).any()) for r in record):
        raise FxpError("the gates removed every neuron; lower --gate-l1")
    plain, _ = remove_dead(plain)
    plain.config = getattr(model, "config", cfg)
    merged, plain, renamed = _merge_linear(plain)
    return plain, record, merged, renamed


def _merge_linear(model: nn.Module) -> tuple[list[str], nn.Module, dict[str, str | None]]:
    """Merge every two linear layers with nothing between them into one: ``W2 W1`` and ``W2 b1 + b2``."""
    from fxp.models import build

    spec, state = copy.deepcopy(model.spec), model.state_dict()
    names = [n for n, _ in model.named_children()]
    merged, fresh, layers, i = [], [], [], 0
    children = dict(model.named_children())
    compute = iter(n for n in names if n.startswith(("fc", "conv")))
    order = []
    for layer in spec["layers"]:
        order.append(next(compute) if layer["type"] in ("linear", "conv2d") else None)
    while i < len(spec["layers"]):
        layer = spec["layers"][i]
        nxt = spec["layers"][i + 1] if i + 1 < len(spec["layers"]) else None
        if layer["type"] == "linear" and nxt is not None and nxt["type"] == "linear":
            a, b = order[i], order[i + 1]  # from the state: ``a`` may hold an earlier merge already
            wa, wb = state[f"{a}.weight"], state[f"{b}.weight"]
            ba = state.get(f"{a}.bias", torch.zeros(wa.shape[0]))
            state[f"{b}.weight"] = wb @ wa
            state[f"{b}.bias"] = wb @ ba + state.get(f"{b}.bias", torch.zeros(wb.shape[0]))
            if not layer.get("bias", True) and not nxt.get("bias", True):
                del state[f"{b}.bias"]
            else:
                nxt["bias"] = True
            merged.append(f"{a}+{b}")
            fresh = [f for f in fresh if f != a] + [b]
            for k in [k for k in state if k.startswith(f"{a}.")]:
                del state[k]
            i += 1
            continue
        layers.append((layer, order[i]))
        i += 1
    if not merged:
        return [], model, {n: n for n in names if n.startswith(("fc", "conv"))}
    spec["layers"] = [layer for layer, _ in layers]
    # the layers keep their order, so the new model's names are the old ones renumbered
    new = build(spec, next(m.cfg for m in children.values() if hasattr(m, "cfg")))
    old_names = [n for _, n in layers if n is not None]
    new_names = [n for n, _ in new.named_children() if n.startswith(("fc", "conv"))]
    new_state = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in old_names:
            head = new_names[old_names.index(head)]
        new_state[f"{head}.{rest}" if rest else head] = v
    for old in fresh:  # the merged weights start from a fresh format (their range changed)
        new_state.pop(f"{new_names[old_names.index(old)]}._extra_state", None)
    missing, unexpected = new.load_state_dict(new_state, strict=False)
    if unexpected or any(not k.endswith("_extra_state") for k in missing):
        raise FxpError(f"merging linear layers lost track of {unexpected or missing}; report this as a bug")
    new.config = getattr(model, "config", None)
    renamed = {n: (new_names[old_names.index(n)] if n in old_names else None) for n in order if n is not None}
    return merged, new, renamed
