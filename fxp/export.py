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

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fxp import fxpm
from fxp.errors import FxpError
from fxp.format import Format
from fxp.layers import FxConv2d, FxFlatten, FxLinear, FxMaxPool2d, FxQuant, FxReLU
from fxp.quantize import quantize


def _raw(t: torch.Tensor, fmt: Format, rounding: str) -> np.ndarray:
    return quantize(t.detach().double(), fmt, rounding).raw.to(torch.int64).numpy()


def _int_dtype(fmt: Format):
    return np.int8 if fmt.word_bits <= 8 else np.int16


def _int_layer_entry(lname: str, m: nn.Module, in_fmt: str, w_fmt: str, out_fmt: str, acc_bits: int, relu: bool,
                     in_zp: int, out_zp: int) -> dict:
    """The description entry of a dense/conv2d layer; its arrays go under ``<name>.<field>``."""
    layer = {"name": lname, "op": "dense" if isinstance(m, FxLinear) else "conv2d",
             "input_format": in_fmt, "weight_format": w_fmt, "output_format": out_fmt, "acc_bits": acc_bits,
             "relu": relu, "input_zero_point": in_zp, "output_zero_point": out_zp,
             "weights": f"{lname}.weight", "multiplier": f"{lname}.multiplier", "shift": f"{lname}.shift"}
    if isinstance(m, FxLinear):
        layer["out_features"] = m.out_features
    else:
        layer.update(out_channels=m.out_channels, kernel=m.kernel_size, stride=m.stride, padding=m.padding)
    return layer


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
            layer = _int_layer_entry(lname, m, str(cur), str(w_fmt), str(out_fmt), cfg.acc_bits, relu, 0, 0)
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


def _multiplier_shift(r: float) -> tuple[int, int]:
    """A real factor as ``M / 2**S`` with ``M`` in [2**30, 2**31) (31 significant bits), gemmlowp style."""
    if not (r > 0 and math.isfinite(r)):
        raise FxpError(f"requantization factor {r} is not a positive number; calibrate with more data")
    mant, exp = math.frexp(r)  # r = mant * 2**exp, mant in [0.5, 1)
    m, s = round(mant * (1 << 31)), 31 - exp
    if m == 1 << 31:
        m, s = m >> 1, s - 1
    if s > 62:  # tiny factors: keep the shift in range, give up significant bits
        m, s = max(1, m >> (s - 62)), 62
    if s < 0:
        raise FxpError(f"requantization factor {r} is too large for a 31-bit multiplier; check the calibration")
    return m, s


@torch.no_grad()
def export_per_channel(model: nn.Sequential, name: str, calib: torch.Tensor,
                       weights: str = "symmetric") -> tuple[dict, dict[str, np.ndarray]]:
    """Post-training int8 with per-channel weight scales and calibrated affine activations.

    Weights, per output channel: ``symmetric`` (``scale = max|w| / 127``, no zero point) or
    ``affine`` (``[min, max]`` onto -128..127 with a per-channel zero point, which spends all 256
    levels on a lopsided channel at the cost of a subtraction per product). Activations: calibrated on
    ``calib`` from the float computation; after a ReLU the range [0, max] maps onto -128..127 with
    zero point -128 (affine), otherwise symmetric. Biases: int32 at ``input scale x weight scale``.
    Requantization: a 31-bit multiplier and a shift per channel (gemmlowp). The input keeps a
    power-of-two format chosen from the calibration data.
    """
    from fxp.dynamic import max_abs_frac_bits

    mods = list(model.named_children())
    if not mods or not isinstance(mods[0][1], FxQuant):
        raise FxpError("the model does not start with an input quantizer; build it with fxp.models")
    in_fmt = Format(8, max_abs_frac_bits(float(calib.abs().max()), 8))
    spec = {"format": fxpm.FORMAT_NAME, "version": fxpm.VERSION, "name": name,
            "input": {"shape": list(model.spec["input_shape"]), "quantizer": {"kind": "fixed", "format": str(in_fmt)}},
            "layers": []}
    arrays: dict[str, np.ndarray] = {}
    x = calib.double()
    s_x, zp_x, cur = 2.0 ** -in_fmt.frac_bits, 0, str(in_fmt)
    i = 1
    while i < len(mods):
        lname, m = mods[i]
        if isinstance(m, (FxLinear, FxConv2d)):
            relu = i + 1 < len(mods) and isinstance(mods[i + 1][1], FxReLU)
            w = m.weight.detach().double()
            b = None if m.bias is None else m.bias.detach().double()
            if isinstance(m, FxLinear):
                y = torch.nn.functional.linear(x, w, b)
            else:
                y = torch.nn.functional.conv2d(x, w, b, m.stride, m.padding)
            if relu:
                y = y.clamp(min=0)
                s_y, zp_y = max(float(y.max()), 1e-12) / 255, -128
            else:
                s_y, zp_y = max(float(y.abs().max()), 1e-12) / 127, 0
            view = (-1,) + (1,) * (w.dim() - 1)
            layer = _int_layer_entry(lname, m, cur, "s8.0", "s8.0", 32, relu, zp_x, zp_y)
            if weights == "affine":
                # the range must hold 0 so that a zero weight stays exact (as zero points require)
                lo, hi = w.flatten(1).amin(1).clamp(max=0), w.flatten(1).amax(1).clamp(min=0)
                s_w = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))
                z_w = (-128 - lo / s_w).round().clamp(-128, 127)
                wq = ((w / s_w.view(view)).round() + z_w.view(view)).clamp(-128, 127).to(torch.int8).numpy()
                arrays[f"{lname}.weight_zero_point"] = z_w.to(torch.int32).numpy()
                layer["weight_zero_point"] = f"{lname}.weight_zero_point"
            else:
                wmax = w.abs().flatten(1).amax(1)
                s_w = torch.where(wmax > 0, wmax / 127, torch.ones_like(wmax))
                wq = (w / s_w.view(view)).round().clamp(-127, 127).to(torch.int8).numpy()
            arrays[f"{lname}.weight"] = wq
            if b is not None:
                arrays[f"{lname}.bias"] = (b / (s_x * s_w)).round().clamp(-(2**31), 2**31 - 1).to(torch.int64).numpy().astype(np.int32)
                layer["bias"] = f"{lname}.bias"
            ms = [_multiplier_shift(s_x * float(sw) / s_y) for sw in s_w]
            arrays[f"{lname}.multiplier"] = np.array([a for a, _ in ms], dtype=np.int64)
            arrays[f"{lname}.shift"] = np.array([b_ for _, b_ in ms], dtype=np.int64)
            spec["layers"].append(layer)
            x, s_x, zp_x, cur = y, s_y, zp_y, "s8.0"
            i += 2 if relu else 1
            continue
        if isinstance(m, FxMaxPool2d):
            x = torch.nn.functional.max_pool2d(x, m.kernel, m.stride)
            spec["layers"].append({"name": lname, "op": "maxpool2d", "kernel": m.kernel, "stride": m.stride})
        elif isinstance(m, FxFlatten):
            x = x.flatten(1)
            spec["layers"].append({"name": lname, "op": "flatten"})
        else:
            raise FxpError(f"layer {lname} ({type(m).__name__}) has no integer form yet; supported: linear, conv2d, "
                           "relu, maxpool2d, flatten")
        i += 1
    return spec, arrays


SCALES = ("pow2", "per-channel")
WEIGHTS = ("symmetric", "affine")


def export(checkpoint_or_run: str | Path, out: str | Path, scales: str | None = None,
           calibration: torch.Tensor | Callable[[], torch.Tensor] | None = None, weights: str = "symmetric",
           force: bool = False) -> fxpm.Model:
    """``fxp export runs/NAME --out model.fxpm``: load the run's checkpoint, write the description.

    ``scales``: ``pow2`` keeps a ``qat``/``fixed`` model's own dynamic fixed-point formats;
    ``per-channel`` quantizes post-training (any mode, float too) with per-channel weight scales and
    calibrated affine activations, which needs ``calibration`` inputs (a tensor, or a function that
    loads them: called only when the export needs them); ``weights`` (``symmetric`` or ``affine``)
    picks its weight quantizer. Default: ``pow2`` for fixed-point runs, ``per-channel`` for float
    runs. Binarized models export their thresholds. An existing description in ``out`` is replaced
    only with ``force``.
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
    if weights not in WEIGHTS:
        raise FxpError(f"weights {weights!r} is not known; use {' or '.join(WEIGHTS)}")
    check_out_folder(out, force, "model.json", "an integer model description")
    model = load_checkpoint(ck)
    name = model.spec.get("name", src.stem)
    if getattr(model, "binary", False):
        from fxp.binary import export_binary

        spec, arrays = export_binary(model, name)
    else:
        scales = scales or ("per-channel" if model.config.mode == "float" else "pow2")
        if scales == "pow2":
            if weights != "symmetric":
                raise FxpError("affine weights need per-channel scales: power-of-two formats are symmetric")
            spec, arrays = export_fixed(model, name)
        else:
            if calibration is None:
                raise FxpError("per-channel export needs calibration data; give the dataset to calibrate on")
            calib = calibration() if callable(calibration) else calibration
            spec, arrays = export_per_channel(model, name, calib, weights)
    fxpm.save(out, spec, arrays)
    return fxpm.Model(spec, arrays)
