"""The integer model description (``.fxpm``): the one seam between training and hardware.

A ``.fxpm`` is a folder with two files:

``model.json``
    The structure: format name and version, the input quantizer, the layers in order with their
    parameters, and for every array the key under which ``arrays.npz`` holds it.
``arrays.npz``
    The integer arrays: int8 weights, bit-packed binary weights (uint8), int32 biases and
    thresholds, int64 requantization multipliers, shifts and zero points.

Version 1 — the input quantizer (the only floating-point step):

``{"kind": "fixed", "format": "s8.7"}``
    ``x_int = clamp(floor(x * 2**frac + 1/2))``: nearest, ties toward +inf, saturating.
``{"kind": "binarize", "threshold": 0.5}``
    bit 1 (meaning +1) where ``x >= threshold``, else bit 0 (meaning -1).

Layers (``op``):

``dense`` / ``conv2d``
    int8 (or narrower) weights ``[out, in]`` / ``[out, in, k, k]``, per-output ``weight_zero_point``,
    int32 ``bias``, scalar ``input_zero_point``; convolution padding contributes zero terms (the
    padded positions hold the real value 0, i.e. ``x - xz = 0``). Accumulate ``acc = sum((x - xz) * (w - wz)) + bias``
    in ``acc_bits`` (wide enough by construction: checked at load). Requantize per output channel:
    ``y = (acc * multiplier + 2**(shift-1)) >> shift`` (for ``shift > 0``; ``acc * multiplier`` for
    0): rounding to nearest with ties toward +inf, the add-half-and-shift of hardware. Then add
    ``output_zero_point`` and saturate to the output format's range, whose lower end is the zero
    point when ``relu`` is true (ReLU folded into the clamp). Power-of-two scales (dynamic fixed
    point) are the case ``multiplier = 2**k``.
``binary_dense``
    Weights bit-packed, ``[out, ceil(in/8)]`` uint8, bit ``k`` of a row at byte ``k // 8``, bit
    ``k % 8`` (LSB first); 1 means +1, 0 means -1. Input bits packed the same way. Accumulate
    ``popcount(XNOR(x, w))`` in ``0..in``. With ``threshold`` (int32 ``[out]``) the output is the bit
    ``popcount >= threshold`` (BatchNorm and sign folded; negative BatchNorm scales folded into the
    row's weights); without it, the popcount itself (the last layer's scores).
``maxpool2d`` (kernel, stride), ``flatten``: on integers, shape only.

Tensors are NCHW per sample; ``flatten`` keeps (C, H, W) order. ``load`` validates every field and
refuses a description with an error naming the field.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from fxp.format import Format

FORMAT_NAME = "fxpm"
VERSION = 1
OPS = ("dense", "conv2d", "binary_dense", "maxpool2d", "flatten")


class Model:
    """A loaded, validated description: ``spec`` (the JSON) and ``arrays`` (name → numpy array)."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]) -> None:
        self.spec, self.arrays = spec, arrays
        self.shapes = validate(spec, arrays)  # per layer: the output shape of one sample

    @property
    def layers(self) -> list[dict]:
        return self.spec["layers"]

    def array(self, layer: dict, key: str) -> np.ndarray | None:
        name = layer.get(key)
        return None if name is None else self.arrays[name]


def save(path: str | Path, spec: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Validate, then write ``path/model.json`` and ``path/arrays.npz`` (byte-identical for equal input)."""
    validate(spec, arrays)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FxpError(f"{path} exists and is not a folder; give a new .fxpm path")
    from fxp.resources import write_atomic

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            npy = io.BytesIO()
            np.save(npy, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # no timestamps
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, npy.getvalue())
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / "arrays.npz", buf.getvalue())
    write_atomic(path / "model.json", json.dumps(spec, indent=2) + "\n")
    return path


def load(path: str | Path) -> Model:
    path = Path(path)
    if not (path / "model.json").is_file():
        raise FxpError(f"{path} is not an integer model description (no model.json); give a folder written by fxp export")
    try:
        spec = json.loads((path / "model.json").read_text())
    except json.JSONDecodeError as e:
        raise FxpError(f"{path / 'model.json'} is not valid JSON ({e}); re-export the model") from None
    npz = path / "arrays.npz"
    try:
        with zipfile.ZipFile(npz) as z:
            infos = z.infolist()
            _check_sizes(npz, infos)
            for info in infos:
                with z.open(info) as fh:
                    _check_header(npz, info, fh)
            arrays = {}
            for info in infos:
                with z.open(info) as fh:
                    arrays[info.filename[: -len(".npy")]] = np.lib.format.read_array(fh, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, FxpError):
            raise
        raise FxpError(f"{npz} cannot be read ({e}); re-export the model") from None
    return Model(spec, arrays)


# arrays.npz is inflated in memory: these bound what its members may claim before any is read, so a
# small crafted file cannot expand to gigabytes (fxp's largest models hold a few MB of arrays).
MAX_ARRAY_BYTES = 1 << 30
MAX_TOTAL_BYTES = 2 << 30


def _check_sizes(npz: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise FxpError(f"{npz}: member {info.filename!r} is not a .npy array; re-export the model")
        if info.file_size > MAX_ARRAY_BYTES:
            raise FxpError(f"{npz}: member {info.filename!r} inflates to {info.file_size} bytes, over the "
                           f"{MAX_ARRAY_BYTES} allowed; re-export the model")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise FxpError(f"{npz}: its members inflate to {total} bytes, over the {MAX_TOTAL_BYTES} allowed; "
                       "re-export the model")


def _check_header(npz: Path, info: zipfile.ZipInfo, fh) -> None:
    """The .npy header must describe a plain integer array exactly as large as the member says."""
    where = f"{npz}: member {info.filename!r}"
    version = np.lib.format.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        raise FxpError(f"{where} has .npy format version {version}, expected 1.0 or 2.0; re-export the model")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    if dtype.kind not in "iu" or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise FxpError(f"{where} holds dtype {dtype}, not a plain integer type; re-export the model")
    if any(n < 0 for n in shape) or fh.tell() + math.prod(shape) * dtype.itemsize != info.file_size:
        raise FxpError(f"{where} claims shape {shape} of {dtype} but holds {info.file_size} bytes; re-export the model")


# --- validation ----------------------------------------------------------------------------------
def _fail(where: str, msg: str) -> FxpError:
    return FxpError(f"{where}: {msg}; re-export the model or fix the description")


def _need(d: dict, key: str, kind: type | tuple, where: str):
    if key not in d:
        raise _fail(where, f"missing field {key!r}")
    v = d[key]
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        raise _fail(f"{where}.{key}", f"expected {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def _arr(arrays: dict, layer: dict, key: str, where: str, dtypes: tuple, shape: tuple | None,
         lo: int | None = None, hi: int | None = None, optional: bool = False) -> np.ndarray | None:
    name = layer.get(key)
    if name is None:
        if optional:
            return None
        raise _fail(where, f"missing field {key!r}")
    if not isinstance(name, str) or name not in arrays:
        raise _fail(f"{where}.{key}", f"array {name!r} is not in arrays.npz")
    a = arrays[name]
    if a.dtype not in dtypes:
        raise _fail(f"{where}.{key}", f"array {name!r} has dtype {a.dtype}, expected {' or '.join(str(np.dtype(d)) for d in dtypes)}")
    if shape is not None and a.shape != shape:
        raise _fail(f"{where}.{key}", f"array {name!r} has shape {a.shape}, expected {shape}")
    if a.size and ((lo is not None and a.min() < lo) or (hi is not None and a.max() > hi)):
        raise _fail(f"{where}.{key}", f"array {name!r} holds values {a.min()}..{a.max()} outside {lo}..{hi}")
    return a


def _fmt(text: object, where: str) -> Format:
    try:
        return Format.parse(text)
    except FxpError as e:
        raise _fail(where, str(e)) from None


def validate(spec: dict, arrays: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """Check every field; return each layer's per-sample output shape. Raises FxpError naming the field."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_NAME:
        raise _fail("format", f"expected {FORMAT_NAME!r}, got {spec.get('format') if isinstance(spec, dict) else spec!r}")
    if spec.get("version") != VERSION:
        raise _fail("version", f"this fxp reads version {VERSION}, the file is version {spec.get('version')!r}; "
                    "export it again with this fxp")
    inp = _need(spec, "input", dict, "input")
    shape = tuple(_need(inp, "shape", list, "input"))
    if len(shape) not in (1, 3) or not all(isinstance(v, int) and v > 0 for v in shape):
        raise _fail("input.shape", f"expected [features] or [channels, height, width], got {list(shape)}")
    q = _need(inp, "quantizer", dict, "input")
    kind = q.get("kind")
    if kind == "fixed":
        carried = str(_fmt(_need(q, "format", str, "input.quantizer"), "input.quantizer.format"))  # an int format
    elif kind == "binarize":
        _need(q, "threshold", (int, float), "input.quantizer")
        carried = "bits"
    else:
        raise _fail("input.quantizer.kind", f"expected 'fixed' or 'binarize', got {kind!r}")
    layers = _need(spec, "layers", list, "layers")
    if not layers:
        raise _fail("layers", "no layers")
    shapes = []
    names = set()
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise _fail(where, "expected an object")
        name = _need(layer, "name", str, where)
        where = f"layers[{i}] ({name})"
        if name in names:
            raise _fail(where, "duplicate layer name")
        names.add(name)
        op = _need(layer, "op", str, where)
        if op not in OPS:
            raise _fail(f"{where}.op", f"{op!r} is not supported; supported: {', '.join(OPS)}")
        if carried == "popcount":
            raise _fail(where, "follows a binary_dense layer without threshold, whose popcounts end the network")
        if op in ("dense", "conv2d") and carried == "bits":
            raise _fail(where, f"{op} cannot take binary (bit) input; use binary_dense here")
        if op == "binary_dense" and carried != "bits":
            raise _fail(where, "binary_dense needs bit input (a binarized input or a thresholded binary_dense)")
        if op == "flatten":
            shape = (int(np.prod(shape)),)
        elif op == "maxpool2d":
            if len(shape) != 3:
                raise _fail(where, f"maxpool2d needs [C, H, W] input, got {list(shape)}")
            k = _need(layer, "kernel", int, where)
            s = _need(layer, "stride", int, where)
            if k < 1 or s < 1 or k > shape[1] or k > shape[2]:
                raise _fail(where, f"kernel {k}, stride {s} do not fit input {list(shape)}")
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif op in ("dense", "conv2d"):
            in_fmt = _fmt(_need(layer, "input_format", str, where), f"{where}.input_format")
            if str(in_fmt) != carried:
                raise _fail(f"{where}.input_format", f"{in_fmt} does not match the incoming {carried}")
            shape = _validate_int_layer(layer, arrays, shape, where)
            carried = str(_fmt(layer["output_format"], f"{where}.output_format"))
        else:
            shape, thresholded = _validate_binary_layer(layer, arrays, shape, where)
            carried = "bits" if thresholded else "popcount"
        shapes.append(shape)
    return shapes


def _validate_int_layer(layer: dict, arrays: dict, shape: tuple, where: str) -> tuple:
    op = layer["op"]
    in_fmt = _fmt(_need(layer, "input_format", str, where), f"{where}.input_format")
    out_fmt = _fmt(_need(layer, "output_format", str, where), f"{where}.output_format")
    w_fmt = _fmt(_need(layer, "weight_format", str, where), f"{where}.weight_format")
    acc_bits = _need(layer, "acc_bits", int, where)
    if not 2 <= acc_bits <= 48:
        raise _fail(f"{where}.acc_bits", f"expected 2..48, got {acc_bits}")
    for f, n in ((in_fmt, "input_format"), (out_fmt, "output_format"), (w_fmt, "weight_format")):
        if f.word_bits > 16:
            raise _fail(f"{where}.{n}", f"{f} is wider than the 16 bits integer layers take")
    _need(layer, "relu", bool, where)
    if op == "dense":
        if len(shape) != 1:
            raise _fail(where, f"dense needs flat input, got {list(shape)}; add a flatten layer")
        n_in = shape[0]
        n_out = _need(layer, "out_features", int, where)
        wshape = (n_out, n_in)
        out_shape = (n_out,)
    else:
        if len(shape) != 3:
            raise _fail(where, f"conv2d needs [C, H, W] input, got {list(shape)}")
        n_out = _need(layer, "out_channels", int, where)
        k = _need(layer, "kernel", int, where)
        s = _need(layer, "stride", int, where)
        p = _need(layer, "padding", int, where)
        h, w = (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1
        if k < 1 or s < 1 or p < 0 or h < 1 or w < 1:
            raise _fail(where, f"kernel {k}, stride {s}, padding {p} do not fit input {list(shape)}")
        wshape = (n_out, shape[0], k, k)
        out_shape = (n_out, h, w)
    _arr(arrays, layer, "weights", where, (np.int8, np.int16), wshape, w_fmt.raw_min, w_fmt.raw_max)
    _arr(arrays, layer, "weight_zero_point", where, (np.int32,), (n_out,), w_fmt.raw_min, w_fmt.raw_max, optional=True)
    xz = _need(layer, "input_zero_point", int, where)
    if not in_fmt.raw_min <= xz <= in_fmt.raw_max:
        raise _fail(f"{where}.input_zero_point", f"{xz} is outside {in_fmt}")
    oz = _need(layer, "output_zero_point", int, where)
    if not out_fmt.raw_min <= oz <= out_fmt.raw_max:
        raise _fail(f"{where}.output_zero_point", f"{oz} is outside {out_fmt}")
    acc_max = (1 << (acc_bits - 1)) - 1
    bias = _arr(arrays, layer, "bias", where, (np.int32,), (n_out,), -acc_max - 1, acc_max, optional=True)
    # The accumulator must hold the worst case: terms times the largest |(x - xz)(w - wz)|, plus bias.
    terms = int(np.prod(wshape[1:]))
    xmag = max(abs(in_fmt.raw_min - xz), abs(in_fmt.raw_max - xz))
    wmag = max(abs(w_fmt.raw_min), abs(w_fmt.raw_max)) * 2
    worst = terms * xmag * wmag + (0 if bias is None or not bias.size else int(np.abs(bias.astype(np.int64)).max()))
    if worst > acc_max:
        raise _fail(f"{where}.acc_bits", f"{acc_bits} bits can overflow (worst case {worst}); widen the accumulator")
    _arr(arrays, layer, "multiplier", where, (np.int64,), (n_out,), 1, (1 << 31) - 1)
    _arr(arrays, layer, "shift", where, (np.int64,), (n_out,), 0, 62)
    # (acc * multiplier) must fit int64: |acc| < 2**(acc_bits-1), multiplier < 2**31.
    if acc_bits + 31 > 63:
        raise _fail(f"{where}.acc_bits", f"{acc_bits} bits times a 31-bit multiplier exceeds 63 bits")
    return out_shape


def _validate_binary_layer(layer: dict, arrays: dict, shape: tuple, where: str) -> tuple[tuple, bool]:
    if len(shape) != 1:
        raise _fail(where, f"binary_dense needs flat input, got {list(shape)}; add a flatten layer")
    n_in = shape[0]
    n_out = _need(layer, "out_features", int, where)
    _arr(arrays, layer, "weights", where, (np.uint8,), (n_out, (n_in + 7) // 8))
    thr = _arr(arrays, layer, "threshold", where, (np.int32,), (n_out,), 0, n_in + 1, optional=True)
    return (n_out,), thr is not None
