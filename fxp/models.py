"""Models as data: a list of layers, built into fixed-point modules.

A model is a spec: an input shape and a list of layers. The built-in ones are specs too, so a model
written in a TOML file goes through the same code::

    name = "my-mlp"
    input_shape = [1, 8, 8]
    [[layers]]
    type = "flatten"
    [[layers]]
    type = "linear"
    out = 64
    [[layers]]
    type = "relu"
    [[layers]]
    type = "linear"
    out = 10

Layer types: ``linear`` (out, bias), ``conv2d`` (out, kernel, stride, padding, bias), ``relu``, ``tsrelu``,
``maxpool2d`` (kernel, stride), ``avgpool2d`` (kernel, stride), ``batchnorm``, ``flatten``; and for
binarized networks ``binarize`` (threshold), ``binary_linear`` (out), ``binary_conv2d`` (out, kernel,
stride), ``sign``, ``scale``, and ``quantize`` (format): a fixed-point input, after which a ``linear``
layer has int8 weights (:mod:`fxp.mixed`) and feeds the binary layers through batchnorm and sign. A
model with binary layers trains them as such in any mode but ``float``, where it becomes its float
counterpart (identity input, real weights, ReLU): the float baseline of the same topology.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import tomllib
import torch
from torch import nn

from fxp.errors import FxpError
from fxp.layers import (
    FxAvgPool2d,
    FxBatchNorm,
    FxConfig,
    FxConv2d,
    FxFlatten,
    FxLinear,
    FxMaxPool2d,
    FxQuant,
    FxReLU,
)


def _seq(*layers: tuple) -> list[dict]:
    out = []
    for spec in layers:
        kind, *args = spec
        d = {"type": kind}
        if kind in ("linear", "binary_linear"):
            d["out"] = args[0]
        elif kind in ("conv2d", "binary_conv2d"):
            d.update(out=args[0], kernel=args[1], **(args[2] if len(args) > 2 else {}))
        elif kind in ("maxpool2d", "avgpool2d"):
            d["kernel"] = args[0]
        out.append(d)
    return out


BUILTIN: dict[str, dict] = {
    "lenet300": {
        "input_shape": [1, 28, 28],
        "layers": _seq(("flatten",), ("linear", 300), ("relu",), ("linear", 100), ("relu",), ("linear", 10)),
    },
    "lenet5": {
        "input_shape": [1, 28, 28],
        "layers": _seq(
            ("conv2d", 6, 5, {"padding": 2}), ("relu",), ("maxpool2d", 2),
            ("conv2d", 16, 5), ("relu",), ("maxpool2d", 2), ("flatten",),
            ("linear", 120), ("relu",), ("linear", 84), ("relu",), ("linear", 10),
        ),
    },
    "digits_mlp": {
        "input_shape": [1, 8, 8],
        "layers": _seq(("flatten",), ("linear", 64), ("relu",), ("linear", 10)),
    },
    # Binarized (FINN-style): inputs binarized at 0.5, [binary linear, BatchNorm, sign]*, binary scores.
    "bnn_digits": {
        "input_shape": [1, 8, 8],
        "layers": _seq(("binarize",), ("flatten",), ("binary_linear", 64), ("batchnorm",), ("sign",),
                       ("binary_linear", 10), ("scale",)),
    },
    "bcnn_digits": {  # a binary CNN small enough for tests: 16 3x3 kernels, pooling, binary scores
        "input_shape": [1, 8, 8],
        "layers": _seq(("binarize",), ("binary_conv2d", 16, 3), ("batchnorm",), ("sign",), ("maxpool2d", 2),
                       ("flatten",), ("binary_linear", 10), ("scale",)),
    },
    "cnv_bnn": {  # a CNV-like binary CNN for 28x28 (FINN's CNV is 3 pairs of 3x3 convolutions for 32x32)
        "input_shape": [1, 28, 28],
        "layers": _seq(("binarize",), ("binary_conv2d", 32, 3), ("batchnorm",), ("sign",),
                       ("binary_conv2d", 32, 3), ("batchnorm",), ("sign",), ("maxpool2d", 2),
                       ("binary_conv2d", 64, 3), ("batchnorm",), ("sign",), ("maxpool2d", 2),
                       ("flatten",), ("binary_linear", 128), ("batchnorm",), ("sign",),
                       ("binary_linear", 10), ("scale",)),
    },
    "sfc_mixed": {  # the SFC with an int8 first layer on 8-bit pixels (FINN's remedy for binarized inputs)
        "input_shape": [1, 28, 28],
        "layers": [{"type": "quantize", "format": "u8.8"}, *_seq(("flatten",),
                   ("linear", 256), ("batchnorm",), ("sign",),
                   ("binary_linear", 256), ("batchnorm",), ("sign",),
                   ("binary_linear", 256), ("batchnorm",), ("sign",),
                   ("binary_linear", 10), ("scale",))],
    },
    "sfc_bnn": {  # FINN's SFC: 784-256-256-256-10
        "input_shape": [1, 28, 28],
        "layers": _seq(("binarize",), ("flatten",),
                       ("binary_linear", 256), ("batchnorm",), ("sign",),
                       ("binary_linear", 256), ("batchnorm",), ("sign",),
                       ("binary_linear", 256), ("batchnorm",), ("sign",),
                       ("binary_linear", 10), ("scale",)),
    },
}
BINARY_TYPES = {"binarize", "quantize", "binary_linear", "binary_conv2d", "sign", "scale"}

LAYER_KEYS = {
    "linear": {"out", "bias"},
    "conv2d": {"out", "kernel", "stride", "padding", "bias"},
    "relu": set(),
    "tsrelu": set(),  # a ReLU with learned gates (fxp.compress.tsrelu): fxp train --tsrelu
    "maxpool2d": {"kernel", "stride"},
    "avgpool2d": {"kernel", "stride"},
    "batchnorm": set(),
    "flatten": set(),
    "binarize": {"threshold"},
    "quantize": {"format"},
    "binary_linear": {"out"},
    "binary_conv2d": {"out", "kernel", "stride"},
    "sign": set(),
    "scale": set(),
}


def load_spec(model: str | Path | dict) -> dict:
    """A built-in name, a path to a TOML file, or a spec dict → a validated spec dict."""
    if isinstance(model, dict):
        spec = copy.deepcopy(model)
    elif str(model) in BUILTIN:
        spec = copy.deepcopy(BUILTIN[str(model)])
        spec["name"] = str(model)
    else:
        path = Path(model)
        if not path.is_file():
            raise FxpError(
                f"model {str(model)!r} is neither a built-in ({', '.join(BUILTIN)}) nor a TOML file; "
                "name a built-in or give the path of a model file"
            )
        try:
            with open(path, "rb") as fh:
                spec = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise FxpError(f"model file {path} is not valid TOML ({e}); fix the file") from None
        spec.setdefault("name", path.stem)
    _validate(spec)
    return spec


def _validate(spec: dict) -> None:
    shape = spec.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise FxpError(f"model spec needs input_shape = [channels, height, width] of positive integers, got {shape!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise FxpError("model spec needs a non-empty [[layers]] list")
    for i, layer in enumerate(layers):
        kind = layer.get("type")
        if kind not in LAYER_KEYS:
            raise FxpError(f"layer {i}: type {kind!r} is not supported; use one of {', '.join(LAYER_KEYS)}")
        extra = set(layer) - LAYER_KEYS[kind] - {"type"}
        if extra:
            raise FxpError(f"layer {i} ({kind}): unknown key(s) {', '.join(sorted(extra))}; allowed: {', '.join(sorted(LAYER_KEYS[kind])) or 'none'}")


def build(model: str | Path | dict, cfg: FxConfig, seed: int = 0) -> nn.Sequential:
    """Build the fixed-point model for ``cfg``; the same seed gives the same initial weights."""
    spec = load_spec(model)
    if any(layer["type"] in BINARY_TYPES for layer in spec["layers"]):
        return _build_binary(spec, cfg, seed)
    torch.manual_seed(seed)
    c, h, w = spec["input_shape"]
    flat = None  # feature count once flattened
    mods: list[tuple[str, nn.Module]] = [("input", FxQuant(cfg))]
    counts: dict[str, int] = {}
    for i, layer in enumerate(spec["layers"]):
        n_before = len(mods)
        kind = layer["type"]
        where = f"layer {i} ({kind})"
        if kind == "linear":
            if flat is None:
                raise FxpError(f"{where}: a linear layer needs flat input; add a flatten layer before it")
            mods.append(("fc", FxLinear(flat, layer["out"], cfg, bias=layer.get("bias", True))))
            flat = layer["out"]
        elif kind == "conv2d":
            if flat is not None:
                raise FxpError(f"{where}: conv2d after flatten; convolutions must come first")
            k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
            mods.append(("conv", FxConv2d(c, layer["out"], k, cfg, stride=s, padding=p, bias=layer.get("bias", True))))
            c, h, w = layer["out"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if h <= 0 or w <= 0:
                raise FxpError(f"{where}: kernel {k} does not fit the {h + k - 1}x{w + k - 1} input; use a smaller kernel or padding")
        elif kind in ("maxpool2d", "avgpool2d"):
            k, s = layer["kernel"], layer.get("stride", layer["kernel"])
            mods.append(("pool", FxMaxPool2d(k, s) if kind == "maxpool2d" else FxAvgPool2d(k, cfg, s)))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "relu":
            mods.append(("relu", FxReLU()))
        elif kind == "tsrelu":
            from fxp.compress.tsrelu import TsReLU

            mods.append(("tsrelu", TsReLU(flat if flat is not None else c, cfg)))
        elif kind == "batchnorm":
            mods.append(("bn", FxBatchNorm(flat if flat is not None else c, cfg)))
        elif kind == "flatten":
            mods.append(("flatten", FxFlatten()))
            flat = c * h * w
        if len(mods) > n_before:  # name layers fc1, conv2, relu3...: readable in metrics and exports
            base, m = mods[-1]
            counts[base] = counts.get(base, 0) + 1
            mods[-1] = (f"{base}{counts[base]}" if base != "flatten" else base, m)
    model = nn.Sequential(OrderedDict(mods))
    model.spec = spec
    return model


def _format_of(layer: dict, where: str) -> str:
    from fxp.format import Format

    text = layer.get("format", "u8.8")
    try:
        fmt = Format.parse(text)
    except FxpError as e:
        raise FxpError(f"{where}: {e}") from None
    if fmt.word_bits > 16:
        raise FxpError(f"{where}: {fmt} is wider than the 16 bits integer layers take; use at most 16 bits")
    return str(fmt)


def _build_binary(spec: dict, cfg: FxConfig, seed: int) -> nn.Sequential:
    from fxp.binary import Binarize, BinaryConv2d, BinaryLinear, Scale, Sign
    from fxp.mixed import QuantizeInput, QuantLinear

    torch.manual_seed(seed)
    real = cfg.mode == "float"
    c, h, w = spec["input_shape"]
    flat = None
    mods: list[tuple[str, nn.Module]] = []
    counts: dict[str, int] = {}
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        where = f"layer {i} ({kind})"
        if kind == "binarize":
            m, base = (nn.Identity() if real else Binarize(layer.get("threshold", 0.5))), "binarize"
        elif kind == "quantize":
            if i:
                raise FxpError(f"{where}: quantize is the input's format; make it the first layer")
            m, base = (nn.Identity() if real else QuantizeInput(_format_of(layer, where))), "quantize"
        elif kind == "linear":
            if flat is None or spec["layers"][0]["type"] != "quantize":
                raise FxpError(f"{where}: an integer layer of a binarized model reads the quantized input: start "
                               "with quantize, then flatten, then linear")
            if layer.get("bias", False):
                raise FxpError(f"{where}: a linear layer of a binarized model has no bias (the batchnorm after it "
                               "holds one); set bias = false")
            m = nn.Linear(flat, layer["out"], bias=False) if real else QuantLinear(flat, layer["out"])
            base, flat = "fc", layer["out"]
        elif kind == "flatten":
            m, base = nn.Flatten(), "flatten"
            flat = c * h * w
        elif kind == "binary_conv2d":
            if flat is not None:
                raise FxpError(f"{where}: a convolution after flatten; convolutions must come first")
            k, s = layer["kernel"], layer.get("stride", 1)
            m = (nn.Conv2d(c, layer["out"], k, stride=s, bias=False) if real
                 else BinaryConv2d(c, layer["out"], k, stride=s))
            base, c, h, w = "bconv", layer["out"], (h - k) // s + 1, (w - k) // s + 1
            if h <= 0 or w <= 0:
                raise FxpError(f"{where}: kernel {k} does not fit the input; binary convolutions do not pad")
        elif kind == "maxpool2d":
            k, s = layer["kernel"], layer.get("stride", layer["kernel"])
            m, base, h, w = nn.MaxPool2d(k, s), "pool", (h - k) // s + 1, (w - k) // s + 1
        elif kind == "binary_linear":
            if flat is None:
                raise FxpError(f"{where}: needs flat input; add a flatten layer before it")
            m = nn.Linear(flat, layer["out"], bias=False) if real else BinaryLinear(flat, layer["out"])
            base, flat = "bfc", layer["out"]
        elif kind == "batchnorm":
            m, base = (nn.BatchNorm1d(flat) if flat is not None else nn.BatchNorm2d(c)), "bn"
        elif kind == "sign":
            m, base = (nn.ReLU() if real else Sign()), "sign"
        elif kind == "scale":
            m, base = Scale(), "scale"
        else:
            raise FxpError(f"{where}: {kind} cannot be mixed with binary layers; use binarize or quantize, flatten, "
                           "linear (after quantize), binary_linear, binary_conv2d, maxpool2d, batchnorm, sign, scale")
        counts[base] = counts.get(base, 0) + 1
        mods.append((f"{base}{counts[base]}" if base not in ("binarize", "quantize", "flatten") else base, m))
    model = nn.Sequential(OrderedDict(mods))
    model.spec = spec
    model.binary = not real
    return model
