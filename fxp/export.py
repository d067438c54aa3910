"""``fxp export``: a trained model → its integer model description (``.fxpm``).

Fixed-point models (``qat`` or ``fixed`` mode) export with their own dynamic formats: int weights at
the weight format, biases rounded onto the accumulator grid (input + weight fractional bits, as
the forward pass adds them), and a power-of-two requantization from the accumulator to the output
format (``multiplier = 1, shift = f_acc - f_out``, or ``multiplier = 2**(f_out - f_acc)`` when the
output is finer). ReLU after a layer folds into its clamp.

Binarized models (:mod:`fxp.binary`) export as ``binary_dense`` and ``binary_conv2d`` layers (and
max-pooling) with BatchNorm and sign folded into one integer threshold per output (negative BatchNorm
scales folded into the weights); an int8 first layer of a mixed model (:mod:`fxp.mixed`) as a
``dense`` layer with thresholds on its accumulator.

Each module's entry is written by the op class registered for its type (:mod:`fxp.ops`: its
``exports_from`` and one method per export style); this module walks the model and carries what
flows from layer to layer (:class:`Export`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fxp import fxpm
from fxp.errors import FxpError
from fxp.layers import FxQuant
from fxp.ops import OPS, QUANTIZERS


class Export:
    """What an export carries from layer to layer, and the entries written so far.

    Each export style is a subclass naming the op classes' method for it (``method``); the op
    classes registered for the model's module types (their ``exports_from``) write the entries.
    """

    method: ClassVar[str]
    style: ClassVar[str]  # for messages

    def __init__(self) -> None:
        self.layers: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, layer: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.layers.append(layer)
        self.arrays.update(arrays or {})


class FixedExport(Export):
    """A ``qat``/``fixed`` model's own dynamic formats: ``fmt`` is the format flowing into the next layer."""

    method, style = "export_fixed", "power-of-two"

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg, self.fmt = cfg, None


class PerChannelExport(Export):
    """Post-training int8: the float calibration activations ``x`` flowing into the next layer, their
    scale, zero point and format, and the weight quantizer: ``weights`` (symmetric or affine) at ``bits``
    (8, or a run of ``fxp compress --uniform``'s), per output channel or (``per_channel`` False) per tensor."""

    method, style = "export_per_channel", "per-channel"

    def __init__(self, calib: torch.Tensor, weights: str, bits: int = 8, per_channel: bool = True) -> None:
        super().__init__()
        self.x, self.weights, self.bits, self.per_channel = calib.double(), weights, bits, per_channel
        self.scale, self.zero_point, self.fmt = 1.0, 0, None


class BinaryExport(Export):
    """A BNN's bits and thresholds; ``fmt`` is the fixed input format an integer first layer reads (None
    where the input is binarized, and after that layer)."""

    method, style = "export_binary", "BNN"

    def __init__(self) -> None:
        super().__init__()
        self.fmt = None


def _exporter(registry: dict, m: nn.Module, method: str):
    """The class of ``registry`` that exports module ``m`` in this style, or None."""
    return next((c for c in registry.values() if isinstance(m, c.exports_from) and hasattr(c, method)), None)


def _exported(registry: dict, method: str) -> str:
    return ", ".join(t.__name__ for c in registry.values() if hasattr(c, method) for t in c.exports_from)


@torch.no_grad()
def export_with(ctx: Export, model: nn.Sequential, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The description of ``model``: each module exported by the op class registered for its type.

    An op's export may fold the modules after it into itself (a ReLU, BatchNorm + sign); it says how
    many it took.
    """
    mods = list(model.named_children())
    quant = _exporter(QUANTIZERS, mods[0][1], ctx.method) if mods else None
    if quant is None:
        raise FxpError(f"the model does not start with an input quantizer ({_exported(QUANTIZERS, ctx.method)}) "
                       f"that a {ctx.style} export takes; build it with fxp.models")
    spec = {"format": fxpm.FORMAT_NAME, "version": fxpm.VERSION, "name": name,
            "input": {"shape": list(model.spec["input_shape"]),
                      "quantizer": getattr(quant, ctx.method)(ctx, mods[0][1])},
            "layers": ctx.layers}
    i = 1
    while i < len(mods):
        lname, m = mods[i]
        op = _exporter(OPS, m, ctx.method)
        if op is None:
            raise FxpError(f"layer {lname} ({type(m).__name__}) has no integer form in a {ctx.style} export; it "
                           f"exports {_exported(OPS, ctx.method)} (a ReLU, BatchNorm or sign only right after the "
                           "layer it folds into)")
        i += 1 + getattr(op, ctx.method)(ctx, lname, m, [x for _, x in mods[i + 1 :]])
    return spec, ctx.arrays


def export_binary(model: nn.Sequential, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A BNN (Binarize, [BinaryLinear, BatchNorm1d, Sign]*, BinaryLinear, Scale) → (spec, arrays)."""
    return export_with(BinaryExport(), model, name)


def export_fixed(model: nn.Sequential, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A ``qat``/``fixed``-mode fxp model → (spec, arrays)."""
    cfg = getattr(model, "config", None) or next(m.cfg for m in model.modules() if isinstance(m, FxQuant))
    if cfg.mode == "float":
        raise FxpError("a float model has no integer formats; train in qat or fixed mode, or export with "
                       "per-channel scales")
    return export_with(FixedExport(cfg), model, name)


def export_per_channel(model: nn.Sequential, name: str, calib: torch.Tensor, weights: str = "symmetric",
                       bits: int = 8, per_channel: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Post-training int8 with per-channel weight scales and calibrated affine activations.

    Weights, per output channel, quantized by :mod:`fxp.compress.uniform` (torch's observers and
    ``quantize_per_channel``, float32): ``symmetric`` (``scale = max|w| / 127``, codes -127..127, no zero
    point: uniform's narrow form) or ``affine`` (``[min, max]`` onto 0..255 with a per-channel zero point,
    stored shifted by 128 as -128..127, which spends all 256 levels on a lopsided channel at the cost of a
    subtraction per product). ``bits`` below 8 (a run of ``fxp compress --uniform``) stores ``bits``-bit
    codes (affine ones shifted by ``2**(bits-1)``) and records the weight format ``s<bits>.0``;
    ``per_channel`` False takes one scale and zero point for the layer. Activations: calibrated on
    ``calib`` from the float computation; after a ReLU the range [0, max] maps onto -128..127 with
    zero point -128 (affine), otherwise symmetric. Biases: int32 at ``input scale x weight scale``.
    Requantization: a 31-bit multiplier and a shift per channel (gemmlowp). The input keeps a
    power-of-two format chosen from the calibration data.
    """
    return export_with(PerChannelExport(calib, weights, bits, per_channel), model, name)


def _check_packed(path: Path, model: nn.Module) -> None:
    """A run of ``fxp compress --share-bits`` keeps its weights in ``weights.fxpz`` too: they must be the
    checkpoint's, bit for bit, or the run was damaged or mixed up."""
    if not path.exists():
        return
    from fxp.compress.packed import load_packed
    from fxp.compress.prune import prunable

    packed = load_packed(path)
    layers = prunable(model)
    if set(packed) != set(layers) or any(not torch.equal(packed[n], m.weight.detach()) for n, m in layers.items()):
        raise FxpError(f"{path} does not hold this checkpoint's weights; compress the run again")


SCALES = ("pow2", "per-channel")
WEIGHTS = ("symmetric", "affine")


def _uniform(run: Path) -> dict | None:
    """What ``fxp compress --uniform`` recorded in the run's metrics.json (bits, scheme, per_channel), or None."""
    import json

    try:
        u = json.loads((run / "metrics.json").read_text()).get("uniform")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    if u is None:
        return None
    if (not isinstance(u, dict) or u.get("scheme") not in WEIGHTS or not isinstance(u.get("per_channel"), bool)
            or isinstance(u.get("bits"), bool) or u.get("bits") not in range(1, 9)):
        raise FxpError(f"{run / 'metrics.json'} records uniform weights {u!r} that fxp compress does not write; "
                       "compress the run again")
    return u


def export(checkpoint_or_run: str | Path, out: str | Path, scales: str | None = None,
           calibration: torch.Tensor | Callable[[], torch.Tensor] | None = None, weights: str | None = None,
           force: bool = False) -> fxpm.Model:
    """``fxp export runs/NAME --out model.fxpm``: load the run's checkpoint, write the description.

    ``scales``: ``pow2`` keeps a ``qat``/``fixed`` model's own dynamic fixed-point formats;
    ``per-channel`` quantizes post-training (any mode, float too) with per-channel weight scales and
    calibrated affine activations, which needs ``calibration`` inputs (a tensor, or a function that
    loads them: called only when the export needs them); ``weights`` (``symmetric`` or ``affine``)
    picks its weight quantizer (default: symmetric). A run of ``fxp compress --uniform`` (its
    metrics.json says so) exports per channel at its own bits and scheme: the codes are those of its
    grid, and another ``weights`` is refused. Default: ``pow2`` for fixed-point runs, ``per-channel``
    for float runs. Binarized models export their thresholds. An existing description in ``out`` is
    replaced only with ``force``.
    """
    from fxp.resources import check_out_folder
    from fxp.train import load_checkpoint

    src = Path(checkpoint_or_run)
    if not src.exists():
        raise FxpError(f"run {src} does not exist; give a run folder written by fxp train (or its checkpoint.pt)")
    ck = src / "checkpoint.pt" if src.is_dir() else src
    if not ck.is_file():
        raise FxpError(f"{src} holds no checkpoint.pt; give a run folder written by fxp train (or its checkpoint.pt)")
    if scales is not None and scales not in SCALES:
        raise FxpError(f"scales {scales!r} is not known; use {' or '.join(SCALES)}")
    if weights is not None and weights not in WEIGHTS:
        raise FxpError(f"weights {weights!r} is not known; use {' or '.join(WEIGHTS)}")
    uniform = _uniform(ck.parent)
    if uniform is not None and weights not in (None, uniform["scheme"]):
        raise FxpError(f"run {src} holds {uniform['bits']}-bit {uniform['scheme']} uniform weights (fxp compress "
                       f"--uniform); export them with --weights {uniform['scheme']}, as {weights} codes would put "
                       "them on another grid")
    weights = weights or (uniform["scheme"] if uniform else "symmetric")
    uniform_run = uniform is not None
    uniform = uniform or {"bits": 8, "per_channel": True}
    check_out_folder(out, force, "model.json", "an integer model description")
    model = load_checkpoint(ck)
    _check_packed(ck.parent / "weights.fxpz", model)
    name = model.spec.get("name", src.stem)
    if getattr(model, "binary", False):
        spec, arrays = export_binary(model, name)
    else:
        scales = scales or ("per-channel" if model.config.mode == "float" else "pow2")
        if scales == "pow2":
            if uniform_run:
                raise FxpError(f"run {src} holds {uniform['bits']}-bit uniform weights (fxp compress --uniform), whose "
                               "grid has its own scales, not powers of two; export it with --scales per-channel")
            if weights != "symmetric":
                raise FxpError("affine weights need per-channel scales: power-of-two formats are symmetric")
            spec, arrays = export_fixed(model, name)
        else:
            if calibration is None:
                raise FxpError("per-channel export needs calibration data; give the dataset to calibrate on")
            calib = calibration() if callable(calibration) else calibration
            spec, arrays = export_per_channel(model, name, calib, weights, uniform["bits"], uniform["per_channel"])
    fxpm.save(out, spec, arrays)
    return fxpm.Model(spec, arrays)
