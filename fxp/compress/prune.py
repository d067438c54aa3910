"""Weight pruning: which weights to drop, and keeping them dropped while the model retrains.

Two rules choose the weights to drop, per layer:

- **threshold** (Deep Compression's rule, Han et al. 2015): drop ``|w| <= quality x std(w)``, with the
  standard deviation taken over the layer's weights still in place (so a second round with the same
  quality goes further, as in their iterative pruning);
- **sparsity**: drop the smallest-magnitude weights until the layer holds the asked fraction of zeros,
  per layer or with one magnitude threshold across all layers (``scope="global"``).

A weight already at zero counts as dropped: masks are ``weight != 0`` where nothing else says so, so a
pruned checkpoint carries its masks in its zeros and needs no extra state.

:class:`Pruner` keeps masks applied while training: the masked gradient entries are zeroed before the
optimizer sees them (momentum and weight decay then leave the weight at exactly 0, also in fixed mode,
where the update is rounded into the weight's format) and the weights are masked again after every
step. ``schedule`` recomputes the masks during training (dynamic pruning): gradual pruning towards a
target sparsity (Zhu and Gupta 2017's cubic schedule) or the same rule re-applied every epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fxp.errors import FxpError
from fxp.layers import Bounds, FxConv2d, FxLinear

# A fraction of a layer's weights set to zero: a layer cannot be emptied (its outputs would be constant)
SPARSITY = Bounds(0, 1, lo_open=True, hi_open=True)
QUALITY = Bounds(0, 100, lo_open=True)
SCOPES = ("layer", "global")


def prunable(model: nn.Module) -> dict[str, nn.Module]:
    """The layers pruning acts on, by name (``fc1``, ``conv2``): linear and convolution layers."""
    if getattr(model, "binary", False):
        raise FxpError("pruning acts on linear and conv2d weights; a binarized model's weights are ±1 and have no "
                       "zero to prune to: prune an integer or float model (e.g. lenet5, lenet300)")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (FxLinear, FxConv2d, nn.Linear, nn.Conv2d))}
    if not layers:
        raise FxpError("the model has no linear or conv2d layer to prune; give a model built by fxp.models")
    return layers


def per_layer(model: nn.Module, value: float | dict[str, float], bounds: Bounds, what: str) -> dict[str, float]:
    """``value`` for every prunable layer (a number), or for the layers a dict names (each checked)."""
    layers = prunable(model)
    if not isinstance(value, dict):
        value = dict.fromkeys(layers, value)
    unknown = [n for n in value if n not in layers]
    if unknown:
        raise FxpError(f"layer {unknown[0]!r} does not exist or has no weights to prune; the model's are "
                       f"{', '.join(layers)}")
    for n, v in value.items():
        bounds.check(f"{what} of {n}", v)
    return dict(value)


def kept(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks the weights carry: ``weight != 0`` per prunable layer."""
    return {n: m.weight.detach() != 0 for n, m in prunable(model).items()}


def threshold_masks(model: nn.Module, quality: float | dict[str, float]) -> dict[str, torch.Tensor]:
    """Keep ``|w| > quality x std`` of each layer's remaining weights (Deep Compression's rule)."""
    layers, masks = prunable(model), kept(model)
    for n, q in per_layer(model, quality, QUALITY, "quality").items():
        w = layers[n].weight.detach()
        live = w[masks[n]]
        std = float(live.std()) if live.numel() > 1 else 0.0
        masks[n] = masks[n] & (w.abs() > q * std)
    return masks


def _keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask of the ``keep`` largest entries; ties broken by position, so the same weights give the same mask."""
    order = torch.argsort(scores.flatten(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:keep]] = True
    return mask.view_as(scores)


def sparsity_masks(model: nn.Module, sparsity: float | dict[str, float], scope: str = "layer") -> dict[str, torch.Tensor]:
    """Drop the smallest-magnitude weights until each named layer is ``sparsity`` zeros (at least: weights
    already at zero stay dropped); ``scope="global"`` ranks all layers' weights together instead."""
    if scope not in SCOPES:
        raise FxpError(f"scope {scope!r} is not known; use {' or '.join(SCOPES)}")
    layers, masks = prunable(model), kept(model)
    targets = per_layer(model, sparsity, SPARSITY, "sparsity")
    if scope == "global":
        if isinstance(sparsity, dict):
            raise FxpError("a global sparsity is one number for all layers; give per-layer sparsities with "
                           "scope 'layer'")
        names = list(layers)
        scores = torch.cat([(layers[n].weight.detach().abs() * masks[n]).flatten() for n in names])
        keep = round(scores.numel() * (1 - float(sparsity)))
        flat, start = _keep_largest(scores, keep).flatten(), 0
        for n in names:
            size = masks[n].numel()
            masks[n] = masks[n] & flat[start : start + size].view_as(masks[n])
            start += size
        return masks
    for n, s in targets.items():
        w = layers[n].weight.detach()
        masks[n] = masks[n] & _keep_largest(w.abs() * masks[n], round(w.numel() * (1 - s)))
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the dropped weights to exactly zero."""
    layers = prunable(model)
    for n, mask in masks.items():
        layers[n].weight.mul_(mask.to(layers[n].weight.dtype))


RAMP = 2 / 3  # of the epochs spent raising the sparsity; the rest fine-tune at the target


def gradual(target: float, epochs: int, first: float = 0.0) -> Callable[[int], float]:
    """Zhu and Gupta's cubic schedule: the sparsity to hold in epoch ``e`` (0-based) of ``epochs``, rising
    from ``first`` to ``target`` fast at first and slowly at the end of the first :data:`RAMP` of the
    epochs; the rest hold ``target`` (the fine-tuning their schedule ends with)."""
    ramp = max(1, round(RAMP * epochs))

    def at(epoch: int) -> float:
        done = min(1.0, (epoch + 1) / ramp)
        return target + (first - target) * (1 - done) ** 3
    return at


class Pruner:
    """Keeps masks on a model's weights while it trains (see the module docstring).

    Parameters: ``model``; ``masks`` (layer name → bool tensor of the weight's shape); ``schedule``:
    called at the start of every epoch with the epoch number, it returns new masks (dynamic pruning) or
    None to keep them. Members: ``masks``, ``history`` (per epoch: the sparsity the masks hold).
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor],
                 schedule: Callable[[int], dict[str, torch.Tensor] | None] | None = None) -> None:
        self.model, self.schedule, self.history = model, schedule, []
        self.layers = prunable(model)
        self._hooks = [self.layers[n].weight.register_hook(self._masked(n)) for n in self.layers]
        self.set(masks)

    def _masked(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            mask = self.masks.get(name)
            return grad if mask is None else grad * mask.to(grad.dtype)
        return hook

    def set(self, masks: dict[str, torch.Tensor]) -> None:
        empty = [n for n, m in masks.items() if not m.any()]
        if empty:
            raise FxpError(f"every weight of {empty[0]} would be pruned, leaving its outputs constant; prune it less "
                           "(a lower sparsity or quality)")
        self.masks = {n: m.clone() for n, m in masks.items()}
        apply_masks(self.model, self.masks)

    def start_epoch(self, epoch: int) -> None:
        if self.schedule is not None:
            masks = self.schedule(epoch)
            if masks is not None:
                self.set(masks)
        self.history.append(sparsity(self.model))

    def after_step(self) -> None:
        apply_masks(self.model, self.masks)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def sparsity(model: nn.Module) -> float:
    """The fraction of the prunable layers' weights that are zero."""
    layers = prunable(model).values()
    return sum(int((m.weight == 0).sum()) for m in layers) / sum(m.weight.numel() for m in layers)


def layer_stats(model: nn.Module) -> list[dict]:
    """Per prunable layer: its weights, how many are nonzero, and its output neurons (rows with a nonzero)."""
    out = []
    for n, m in prunable(model).items():
        w = m.weight.detach()
        rows = w.flatten(1).ne(0).any(1)
        out.append({"layer": n, "kind": "conv2d" if w.dim() == 4 else "linear", "shape": list(w.shape),
                    "weights": w.numel(), "nonzero": int(w.ne(0).sum()), "neurons": w.shape[0],
                    "neurons_live": int(rows.sum())})
    return out
