"""The hardware engines, by kind: the one place that maps the engine an op names to the unit that builds it.

An op of the integer model description names its engine (``op.engine``: ``"xnor"`` for
``binary_dense``, ``"mac"`` for ``dense``, None where no hardware builds it yet); a unit class says
its ``kind``, the ``OPTIONS`` it takes, how to build itself from a layer (``from_layer``) and a
random layer to build (``random_layer``). Adding an engine is one entry here.
"""

from __future__ import annotations

from fxp.errors import FxpError
from hdl_gen.mac import MacUnit
from hdl_gen.options import Option, check_options
from hdl_gen.xnor import XnorPopcountUnit

ENGINES = {cls.kind: cls for cls in (XnorPopcountUnit, MacUnit)}


def engine(kind: str):
    """The unit class of ``kind``, or an error listing the kinds there are."""
    if kind not in ENGINES:
        raise FxpError(f"unit kind {kind!r} is not known; use {' or '.join(ENGINES)}")
    return ENGINES[kind]


def all_options() -> list[tuple[Option, list[str]]]:
    """Every option of every engine once, with the kinds that take it (for the command line)."""
    seen: dict[str, tuple[Option, list[str]]] = {}
    for kind, cls in ENGINES.items():
        for option in cls.OPTIONS:
            seen.setdefault(option.name, (option, []))[1].append(kind)
    return list(seen.values())


def buildable(model) -> str:
    """The layers of ``model`` a unit builds, each with its kind (for errors that name the choice)."""
    names = [f"{op.name} ({op.op}: {op.engine})" for op in model.ops if op.engine in ENGINES and op.window is None]
    return ", ".join(names) if names else f"none (units build {_what_units_build()})"


def _what_units_build() -> str:
    from fxp.ops import OPS

    return ", ".join(f"{name} ({cls.engine})" for name, cls in sorted(OPS.items())
                     if cls.engine in ENGINES and not cls.windowed)


def op_named(model, name: str, kind: str | None = None):
    """The op of layer ``name`` of ``model``, which a unit (of ``kind``, if given) must build."""
    if all(op.name != name for op in model.ops):
        raise FxpError(f"no layer {name!r} in the model; layers that units build: {buildable(model)}")
    op = model.op(name)
    if op.engine not in ENGINES:
        raise FxpError(f"layer {name!r} is {op.op}, which no hardware engine builds; engines build "
                       f"{_what_units_build()}: {buildable(model)}")
    if kind is not None and op.engine != kind:
        raise FxpError(f"layer {name!r} is {op.op}, which the {op.engine} unit builds, not the {kind} unit; "
                       f"use kind {op.engine!r}")
    return op


def build_unit(model, layer: str, pe: int, simd: int, options: dict | None = None, kind: str | None = None):
    """The unit that builds ``layer`` of ``model`` (the kind its op names; ``kind``, if given, must agree),
    with ``options`` checked against what that unit takes."""
    op = op_named(model, layer, kind)
    cls = engine(op.engine)
    return cls.from_op(op, pe, simd, **check_options(cls, dict(options or {}), ENGINES))
