"""The integer model description (``.fxpm``): the one seam between training and hardware.

A ``.fxpm`` is a folder with two files:

``model.json``
    The structure: format name and version, the input quantizer, the layers in order with their
    parameters, and for every array the key under which ``arrays.npz`` holds it.
``arrays.npz``
    The integer arrays: int8 weights, bit-packed binary weights (uint8), int32 biases and
    thresholds, int64 requantization multipliers, shifts and zero points.

Version 1: ``input`` (its ``shape`` and ``quantizer``, the only floating-point step) and ``layers``
in order, each with a unique ``name`` and an ``op``. What an op's fields are, and what it computes,
is defined by its class in :mod:`fxp.ops` (one module per op: ``dense``, ``conv2d``,
``binary_dense``, ``binary_conv2d``, ``maxpool2d``, ``flatten``; the quantizers ``fixed`` and
``binarize`` in ``inputs``); docs/integer-model.md describes them for readers.

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
from fxp.ops import OPS, QUANTIZERS, InputQuantizer, Op
from fxp.ops.base import fail, need

FORMAT_NAME = "fxpm"
VERSION = 1


class Model:
    """A loaded, validated description: ``spec`` (the JSON) and ``arrays`` (name → numpy array), read as
    ``input`` (the input quantizer) and ``ops`` (one op instance per layer, :mod:`fxp.ops`)."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]) -> None:
        self.spec, self.arrays = spec, arrays
        self.input, self.ops = build(spec, arrays)
        self.shapes = [op.out_shape for op in self.ops]  # per layer: the output shape of one sample

    @property
    def layers(self) -> list[dict]:
        return self.spec["layers"]

    def array(self, layer: dict, key: str) -> np.ndarray | None:
        name = layer.get(key)
        return None if name is None else self.arrays[name]

    def op(self, name: str):
        """The op of layer ``name``, or an error listing the layers there are."""
        found = next((op for op in self.ops if op.name == name), None)
        if found is None:
            raise FxpError(f"no layer {name!r} in the model; its layers: {', '.join(op.name for op in self.ops)}")
        return found


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
            arrays = {}
            for info in infos:
                with z.open(info) as fh:
                    _check_header(npz, info, fh)  # before anything is inflated past the header
                    fh.seek(0)  # read_array reads the header itself
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
def build(spec: dict, arrays: dict[str, np.ndarray]) -> tuple[InputQuantizer, list[Op]]:
    """The input quantizer and one op instance per layer, each validated. Raises FxpError naming the field."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_NAME:
        raise fail("format", f"expected {FORMAT_NAME!r}, got {spec.get('format') if isinstance(spec, dict) else spec!r}")
    if spec.get("version") != VERSION:
        raise fail("version", f"this fxp reads version {VERSION}, the file is version {spec.get('version')!r}; "
                   "export it again with this fxp")
    inp = need(spec, "input", dict, "input")
    shape = tuple(need(inp, "shape", list, "input"))
    if len(shape) not in (1, 3) or not all(isinstance(v, int) and v > 0 for v in shape):
        raise fail("input.shape", f"expected [features] or [channels, height, width], got {list(shape)}")
    q = need(inp, "quantizer", dict, "input")
    kind = q.get("kind")
    if kind not in QUANTIZERS:
        raise fail("input.quantizer.kind", f"expected {' or '.join(map(repr, QUANTIZERS))}, got {kind!r}")
    quantizer = QUANTIZERS[kind](q, shape)
    layers = need(spec, "layers", list, "layers")
    if not layers:
        raise fail("layers", "no layers")
    ops: list[Op] = []
    carried = quantizer.output
    names = set()
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise fail(where, "expected an object")
        name = need(layer, "name", str, where)
        where = f"layers[{i}] ({name})"
        if name in names:
            raise fail(where, "duplicate layer name")
        names.add(name)
        op = need(layer, "op", str, where)
        if op not in OPS:
            raise fail(f"{where}.op", f"{op!r} is not supported; supported: {', '.join(OPS)}")
        ops.append(OPS[op](layer, arrays, carried, where))
        carried = ops[-1].output
    return quantizer, ops


def validate(spec: dict, arrays: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """Check every field; return each layer's per-sample output shape. Raises FxpError naming the field."""
    return [op.out_shape for op in build(spec, arrays)[1]]
