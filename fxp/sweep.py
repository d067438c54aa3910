"""``fxp sweep``: accuracy against bit width, one dimension at a time.

Dimensions: ``act`` (activations), ``grad`` (back-propagated gradients), ``update`` (stored
parameters and their updates), ``prop`` (activations and gradients together: Courbariaux's
"propagations"). The others stay at the reference widths given. The float baseline is trained once
with the same recipe; the report names, per dimension, the smallest width within 1 point of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

from fxp.datasets import Dataset
from fxp.errors import FxpError
from fxp.layers import FxConfig
from fxp.models import load_spec
from fxp.resources import check_out_folder, render, write_atomic
from fxp.train import Recipe, check_compatible, check_recipe, train_model

DIMENSIONS = {"act": ("act_bits",), "grad": ("grad_bits",), "update": ("update_bits",), "prop": ("act_bits", "grad_bits")}


def run_sweep(model: str, data: Dataset, cfg: FxConfig, recipe: Recipe, bits: list[int], vary: list[str],
              out: str | Path, tolerance_points: float = 1.0, progress: bool = True, force: bool = False) -> dict:
    """Train the float baseline, then one model per (dimension, width); write the table, plot and JSON.

    Everything is checked before the first training; an earlier sweep in ``out`` is replaced only with ``force``.
    """
    out = check_out_folder(out, force, "sweep.json", "a sweep")
    configs = check_sweep(cfg, bits, vary, tolerance_points)
    spec = load_spec(model)
    check_compatible(spec, data)
    check_recipe(spec, cfg, recipe)
    _, base = train_model(spec, data, replace(cfg, mode="float"), recipe, progress, label="float baseline")
    float_acc = base[-1]["test_accuracy"]
    rows = []
    for dim in vary:
        for b in bits:
            c = configs[dim, b]
            label = f"{dim}={b}"
            try:
                _, hist = train_model(spec, data, c, recipe, progress, label=label)
                acc, status = hist[-1]["test_accuracy"], "ok"
            except FxpError as e:
                if "diverged" not in str(e):
                    raise
                acc, status = None, "diverged"
            rows.append({"dimension": dim, "bits": b, "accuracy": acc, "status": status,
                         "config": {f: getattr(c, f) for f in ("act_bits", "grad_bits", "update_bits")}})
    smallest = {}
    for dim in vary:
        ok = [r["bits"] for r in rows if r["dimension"] == dim and r["accuracy"] is not None
              and 100 * (float_acc - r["accuracy"]) <= tolerance_points]
        smallest[dim] = min(ok) if ok else None
    record = {
        "model": spec.get("name"), "dataset": data.name, "mode": cfg.mode, "reference": cfg.to_dict(),
        "recipe": asdict(recipe), "float_accuracy": float_acc, "tolerance_points": tolerance_points,
        "rows": rows, "smallest_within_tolerance": smallest,
    }
    from fxp.plots import accuracy_vs_bits

    series = {d: [(r["bits"], r["accuracy"]) for r in rows if r["dimension"] == d and r["accuracy"] is not None]
              for d in vary}
    write_atomic(out / "sweep.png", accuracy_vs_bits(series, float_acc, "bits (sign included)"))
    write_atomic(out / "sweep.json", json.dumps(record, indent=2) + "\n")
    write_atomic(out / "sweep.md", render("sweep.md.j2", bits=bits, vary=vary, table=_table(rows, bits, vary), **record))
    return record


def check_sweep(cfg: FxConfig, bits: list[int], vary: list[str], tolerance_points: float = 1.0) -> dict:
    """The configuration of every (dimension, width) of a sweep around ``cfg``, each checked by
    :class:`FxConfig` (so nothing is trained before a bad width or dimension is refused)."""
    if not (tolerance_points >= 0 and math.isfinite(tolerance_points)):
        raise FxpError(f"tolerance must be a number of accuracy points >= 0, got {tolerance_points}")
    if not bits or not vary:
        raise FxpError("give at least one bit width and one dimension to vary")
    for v in vary:
        if v not in DIMENSIONS:
            raise FxpError(f"vary: {v!r} is not a dimension; use any of {', '.join(DIMENSIONS)}")
    try:
        return {(dim, b): replace(cfg, **{f: b for f in DIMENSIONS[dim]}) for dim in vary for b in bits}
    except FxpError as e:
        raise FxpError(f"bits: {e}; give widths like 4,8,12") from None


def _table(rows: list[dict], bits: list[int], vary: list[str]) -> list[list[str]]:
    cell = {(r["dimension"], r["bits"]): r for r in rows}
    table = []
    for b in bits:
        line = [str(b)]
        for d in vary:
            r = cell[(d, b)]
            line.append("diverged" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %")
        table.append(line)
    return table
