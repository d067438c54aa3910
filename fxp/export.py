"""``fxp export``: a trained model → its integer model description (``.fxpm``).

Fixed-point models (``qat`` or ``fixed`` mode) export with their own dynamic formats: int weights at
the weight format, biases rounded onto the accumulator grid (input + weight fractional bits, as
the forward pass adds them), and a power-of-two requantization from the accumulator to the output
format (``multiplier = 1, shift = f_acc - f_out``, or ``multiplier = 2**(f_out - f_acc)`` when the
output is finer). ReLU after a layer folds into its clamp.

Binarized models (:mod:`fxp.binary`) export as ``binary_dense`` layers with BatchNorm and sign folded
into one integer threshold per output (negative BatchNorm scales folded into the weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fxp import fxpm
from fxp.errors import FxpError
from fxp.format import Format
from fxp.layers import FxConv2d, FxFlatten, FxLinear, FxMaxPool2d, FxQuant, FxReLU, _FxParams
from fxp.quantize import quantize


def _raw(t: torch.Tensor, fmt: Format, rounding: str) -> np.ndarray:
    return quantize(t.detach().double(), fmt, rounding).raw.to(torch.int64).numpy()


def _int_dtype(fmt: Format):
    return np.int8 if fmt.word_bits <= 8 else np.int16


def export_fixed(model: nn.Sequential, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A ``qat``/``fixed``-mode fxp model → (spec, arrays)."""
    cfg = getattr(model, "config", None) or next(m.cfg for m in model.modules() if isinstance(m, FxQuant))
    if cfg.mode == "float":
        raise FxpError("a float model has no integer formats; train with --mode qat or fixed, then export")
    mods = list(model.named_children())
    if not mods or not isinstance(mods[0][1], FxQuant):
        raise FxpError("the model does not start with an input quantizer; build it with fxp.models")
    in_fmt = mods[0][1].act.fmt
    spec = {"format": fxpm.FORMAT_NAME, "version": fxpm.VERSION, "name": name,
            "input": {"shape": list(model.spec["input_shape"]), "quantizer": {"kind": "fixed", "format": str(in_fmt)}},
            "layers": []}
    arrays: dict[str, np.ndarray] = {}
    cur = in_fmt
    i = 1
    while i < len(mods):
        lname, m = mods[i]
        if isinstance(m, (FxLinear, FxConv2d)):
            w_fmt = m.ptrack["weight"].fmt
            out_fmt = m.out.act.fmt
            f_acc = cur.frac_bits + w_fmt.frac_bits
            relu = i + 1 < len(mods) and isinstance(mods[i + 1][1], FxReLU)
            w = _raw(m.weight, w_fmt, cfg.rounding).astype(_int_dtype(w_fmt))
            layer = {"name": lname, "op": "dense" if isinstance(m, FxLinear) else "conv2d",
                     "input_format": str(cur), "weight_format": str(w_fmt), "output_format": str(out_fmt),
                     "acc_bits": cfg.acc_bits, "relu": relu, "input_zero_point": 0, "output_zero_point": 0,
                     "weights": f"{lname}.weight", "multiplier": f"{lname}.multiplier", "shift": f"{lname}.shift"}
            if isinstance(m, FxLinear):
                layer["out_features"] = m.out_features
            else:
                layer.update(out_channels=m.out_channels, kernel=m.kernel_size, stride=m.stride, padding=m.padding)
            arrays[f"{lname}.weight"] = w
            if m.bias is not None:
                acc_fmt = Format(cfg.acc_bits, f_acc)
                arrays[f"{lname}.bias"] = _raw(m.bias, acc_fmt, "nearest_up").astype(np.int32)
                layer["bias"] = f"{lname}.bias"
            d = f_acc - out_fmt.frac_bits
            n = w.shape[0]
            arrays[f"{lname}.multiplier"] = np.full(n, 1 << max(-d, 0), dtype=np.int64)
            arrays[f"{lname}.shift"] = np.full(n, max(d, 0), dtype=np.int64)
            spec["layers"].append(layer)
            cur = out_fmt
            i += 2 if relu else 1
            continue
        if isinstance(m, FxMaxPool2d):
            spec["layers"].append({"name": lname, "op": "maxpool2d", "kernel": m.kernel, "stride": m.stride})
        elif isinstance(m, FxFlatten):
            spec["layers"].append({"name": lname, "op": "flatten"})
        elif isinstance(m, FxReLU):
            raise FxpError(f"layer {lname}: a ReLU that does not follow a linear or conv layer cannot be exported")
        else:
            raise FxpError(f"layer {lname} ({type(m).__name__}) has no integer form yet; supported: linear, conv2d, "
                           "relu, maxpool2d, flatten")
        i += 1
    return spec, arrays


def export(checkpoint_or_run: str | Path, out: str | Path) -> fxpm.Model:
    """``fxp export runs/NAME --out model.fxpm``: load the run's checkpoint, write the description."""
    from fxp.train import load_checkpoint

    src = Path(checkpoint_or_run)
    ck = src / "checkpoint.pt" if src.is_dir() else src
    if not ck.is_file():
        raise FxpError(f"{ck} does not exist; give a run folder written by fxp train (or its checkpoint.pt)")
    model = load_checkpoint(ck)
    if getattr(model, "binary", False):
        from fxp.binary import export_binary

        spec, arrays = export_binary(model, model.spec.get("name", src.stem))
    else:
        spec, arrays = export_fixed(model, model.spec.get("name", src.stem))
    fxpm.save(out, spec, arrays)
    return fxpm.Model(spec, arrays)


def model_has_fx(model: nn.Module) -> bool:
    return any(isinstance(m, _FxParams) for m in model.modules())
