"""The op base class: what one layer of an integer model description is, declared in one place.

An op class (FINN's ``get_nodeattr_types`` + ``execute_node``, hls4ml's ``_expected_attributes``)
registers itself by subclassing :class:`Op` with an ``op`` name, declares its ``fields`` once, and
implements, for one layer of a description:

``accepts(incoming)``
    refuse an input whose kind it cannot take (the base refuses the popcounts that end a network);
``produces() -> Activation``
    the shape and kind of its output; refuses fields that do not fit the input;
``check()``
    rules across fields (bounds that depend on other fields, accumulator width);
``golden(x)`` / ``torch(x)``
    its integer arithmetic on a batch, once with numpy integers (the golden model), once with torch
    (the independent PyTorch path);
``export_<style>(ctx, name, module, following)`` (classmethods, optional)
    its entry in a description exported from a trained module of a type in ``exports_from``;
    returns how many of the ``following`` modules it folded into itself (a ReLU, BatchNorm + sign).

``engine`` names the hardware unit that builds the op (``hdl_gen`` maps the name to a unit), or
None where none does. Input quantizers (:class:`InputQuantizer`) work the same way, keyed by ``kind``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fxp.errors import FxpError
from fxp.format import Format

BITS = "bits"  # 0/1 values, 1 meaning +1
POPCOUNT = "popcount"  # the scores of a binary_dense layer without threshold: they end the network


@dataclass(frozen=True)
class Activation:
    """What flows between layers, per sample: its shape and the kind of its values.

    ``kind`` is ``"bits"``, ``"popcount"`` or an integer format's text (``"s8.3"``).
    """

    shape: tuple[int, ...]
    kind: str

    @property
    def format(self) -> Format | None:
        """The integer format of the values, or None for bits and popcounts."""
        return None if self.kind in (BITS, POPCOUNT) else Format.parse(self.kind)


# --- fields --------------------------------------------------------------------------------------
def fail(where: str, msg: str) -> FxpError:
    return FxpError(f"{where}: {msg}; re-export the model or fix the description")


def need(d: dict, key: str, kind: type | tuple, where: str):
    """``d[key]``, which must be there and of type ``kind`` (a bool is not an int)."""
    if key not in d:
        raise fail(where, f"missing field {key!r}")
    v = d[key]
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        raise fail(f"{where}.{key}", f"expected {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def parse_format(text: object, where: str) -> Format:
    try:
        return Format.parse(text)
    except FxpError as e:
        raise fail(where, str(e)) from None


_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """A scalar field: its type (``Format`` means a format's text, read as a Format), default and bounds."""

    type: type | tuple[type, ...]
    default: Any = _REQUIRED
    lo: int | None = None
    hi: int | None = None

    def read(self, d: dict, key: str, where: str):
        if key not in d and self.default is not _REQUIRED:
            return self.default
        if self.type is Format:
            return parse_format(need(d, key, str, where), f"{where}.{key}")
        v = need(d, key, self.type, where)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise fail(f"{where}.{key}", f"expected {self.lo}..{self.hi}, got {v}")
        return v


@dataclass(frozen=True)
class ArrayField:
    """A field naming an array of ``arrays.npz``: its dtypes, and its shape and value bounds given the op."""

    dtypes: tuple
    shape: Callable[[Any], tuple]
    lo: int | Callable[[Any], int] | None = None
    hi: int | Callable[[Any], int] | None = None
    optional: bool = False

    def check(self, op: Any, arrays: dict, key: str, where: str) -> None:
        name = op.layer.get(key)
        if name is None:
            if self.optional:
                return
            raise fail(where, f"missing field {key!r}")
        if not isinstance(name, str) or name not in arrays:
            raise fail(f"{where}.{key}", f"array {name!r} is not in arrays.npz")
        a = arrays[name]
        if a.dtype not in self.dtypes:
            raise fail(f"{where}.{key}", f"array {name!r} has dtype {a.dtype}, expected "
                       f"{' or '.join(str(np.dtype(d)) for d in self.dtypes)}")
        shape = self.shape(op)
        if a.shape != shape:
            raise fail(f"{where}.{key}", f"array {name!r} has shape {a.shape}, expected {shape}")
        lo, hi = (b(op) if callable(b) else b for b in (self.lo, self.hi))
        if a.size and ((lo is not None and a.min() < lo) or (hi is not None and a.max() > hi)):
            raise fail(f"{where}.{key}", f"array {name!r} holds values {a.min()}..{a.max()} outside {lo}..{hi}")


def _read_fields(obj: Any, d: dict, where: str) -> None:
    """Every scalar field of ``obj``'s class from ``d``, as an attribute of ``obj``."""
    for key, f in obj.fields.items():
        if isinstance(f, Field):
            setattr(obj, key, f.read(d, key, where))


_MEMBERS = ("op", "kind", "name", "layer", "incoming", "where", "output", "spec", "shape")  # set on instances


def _register(registry: dict, key: str, cls: type, reserved: type) -> None:
    if key in registry:
        raise TypeError(f"{key!r} is registered twice: {registry[key].__qualname__} and {cls.__qualname__}")
    clash = [f for f in cls.fields if hasattr(reserved, f) or f in _MEMBERS]
    if clash:
        raise TypeError(f"{cls.__qualname__}: field(s) {', '.join(clash)} would hide a member of {reserved.__name__}")
    registry[key] = cls


# --- windows -------------------------------------------------------------------------------------
def windows(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """The ``kernel`` x ``kernel`` windows at ``stride`` of a batch ``x`` [N, C, H, W], zero-padded by
    ``padding`` on every side: [N, C, H', W', k, k], a view of ``x`` where there is no padding."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Each window of :func:`windows` as one row in (c, u, v) order: [N, H', W', C k k], a copy in ``x``'s
    dtype (so a narrow dtype keeps it small)."""
    cols = windows(x, kernel, stride, padding)
    n, c, h, w = cols.shape[:4]
    return cols.transpose(0, 2, 3, 1, 4, 5).reshape(n, h, w, c * kernel * kernel)


# --- ops -----------------------------------------------------------------------------------------
OPS: dict[str, type[Op]] = {}  # op name -> class, in registration order


class Op:
    """One layer of a description, validated on construction (see the module docstring)."""

    op: ClassVar[str]
    engine: ClassVar[str | None] = None
    # only reorders or reshapes its input (in C, H, W order): a stream needs no hardware for it
    reorders_only: ClassVar[bool] = False
    # what its output keeps of each k x k window of its [C, H, W] input, where it reads windows: None (the
    # engine's matrix product, as a convolution) or "max" (max-pooling); hardware feeds it through a sliding window
    window_reduce: ClassVar[str | None] = None
    # whether it reads windows: then its ``kernel`` and ``stride`` fields, and ``padding`` where it has one,
    # say which (see ``window``)
    windowed: ClassVar[bool] = False
    fields: ClassVar[dict[str, Field | ArrayField]] = {}
    exports_from: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "op" in cls.__dict__:  # shared bases (IntegerLayer) name no op and do not register
            _register(OPS, cls.op, cls, Op)

    def __init__(self, layer: dict, arrays: dict[str, np.ndarray], incoming: Activation,
                 where: str | None = None) -> None:
        self.layer, self.name, self.incoming = layer, layer.get("name"), incoming
        self.where = where or f"layer {self.name}"
        self._arrays = arrays
        self.accepts(incoming)
        _read_fields(self, layer, self.where)
        self.output = self.produces()
        for key, f in self.fields.items():
            if isinstance(f, ArrayField):
                f.check(self, arrays, key, self.where)
        self.check()

    @property
    def window(self) -> tuple[int, int, int] | None:
        """(kernel, stride, padding) where the op reads k x k windows of its input, else None; an op
        without a ``padding`` field reads its input unpadded."""
        return (self.kernel, self.stride, getattr(self, "padding", 0)) if self.windowed else None

    def window_grid(self) -> tuple[int, int]:
        """(H', W'): how many of its windows fit down and across its [C, H, W] input; refuses an input of
        another rank, and a window that does not fit."""
        shape = self.in_shape
        if len(shape) != 3:
            raise self.error(f"{self.op} needs [C, H, W] input, got {list(shape)}")
        k, s, p = self.window
        h, w = ((n + 2 * p - k) // s + 1 for n in shape[1:]) if k >= 1 and s >= 1 and p >= 0 else (0, 0)
        if h < 1 or w < 1:
            padded = f", padding {p}" if "padding" in self.fields else ""
            raise self.error(f"kernel {k}, stride {s}{padded} do not fit input {list(shape)}")
        return h, w

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.incoming.shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.output.shape

    def array(self, field: str) -> np.ndarray | None:
        """The array that ``field`` names, or None where the layer leaves an optional array out."""
        name = self.layer.get(field)
        return None if name is None else self._arrays[name]

    def error(self, msg: str, field: str | None = None) -> FxpError:
        """A validation error naming this layer (and ``field``)."""
        return fail(f"{self.where}.{field}" if field else self.where, msg)

    def accepts(self, incoming: Activation) -> None:
        if incoming.kind == POPCOUNT:
            raise self.error("follows a binary_dense layer without threshold, whose popcounts end the network")

    def produces(self) -> Activation:
        raise NotImplementedError

    def check(self) -> None:
        """Rules across fields, after every field and array is read; none by default."""

    def golden(self, x: np.ndarray) -> np.ndarray:
        """int64 outputs of a batch (N, *in_shape) of int64 inputs, with numpy integer operations."""
        raise NotImplementedError

    def torch(self, x):
        """The same outputs as :meth:`golden`, computed with torch (int64 tensors in and out)."""
        raise NotImplementedError


# --- input quantizers ----------------------------------------------------------------------------
QUANTIZERS: dict[str, type[InputQuantizer]] = {}  # kind -> class


class InputQuantizer:
    """The description's input quantizer (``input.quantizer``), the only floating-point step.

    Subclasses set ``kind`` (and so register), declare ``fields``, and implement ``produces``,
    ``golden(x)`` (float64 array → int64 array) and ``torch(x)`` (float64 tensor → int64 tensor), and
    ``export_<style>(ctx, module)`` classmethods returning the quantizer's entry.
    """

    kind: ClassVar[str]
    fields: ClassVar[dict[str, Field]] = {}
    exports_from: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _register(QUANTIZERS, cls.kind, cls, InputQuantizer)

    def __init__(self, spec: dict, shape: tuple[int, ...], where: str = "input.quantizer") -> None:
        self.spec, self.shape = spec, shape
        _read_fields(self, spec, where)
        self.output = self.produces()

    def produces(self) -> Activation:
        raise NotImplementedError

    def golden(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def torch(self, x):
        raise NotImplementedError
