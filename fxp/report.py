"""``fxp report``: how few bits does a small model need? A quantization report on embedded data.

Trains a float MLP on the 8x8 digits, then for each word width quantizes every weight, the input and
every activation to its own dynamic format (max-abs initializer) and measures accuracy and
per-tensor error. Writes ``report.json``, ``report.md`` and ``accuracy_vs_bits.png``.

:func:`report_run` asks the same of a run of ``fxp train``: its summary, and a post-training
quantization sweep of its own model.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from fxp.datasets import Dataset, digits, load
from fxp.dynamic import max_abs_frac_bits
from fxp.errors import FxpError
from fxp.format import Format
from fxp.layers import FxConfig, named_trackers
from fxp.models import BINARY_TYPES, build
from fxp.progress import track
from fxp.quantize import quantize
from fxp.resources import check_out_folder, render, write_atomic
from fxp.rounding import ROUNDING, check_modes
from fxp.train import (
    EPOCHS,
    SEED,
    check_compatible,
    evaluate,
    load_checkpoint,
    read_run_metrics,
    run_dataset,
    run_folder,
)

DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 10, 12, 16)


def _mlp(seed: int, hidden: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def _dyn_format(t: torch.Tensor, word_bits: int) -> Format:
    return Format(word_bits, max_abs_frac_bits(float(t.abs().max()), word_bits))


def _q(t: torch.Tensor, fmt: Format, rounding: str, overflow: str) -> torch.Tensor:
    return quantize(t, fmt, rounding, overflow).to_float(torch.float32)


def _sqnr_db(x: torch.Tensor, q: torch.Tensor) -> float:
    noise = float(((x - q) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((x**2).sum()) / noise)


def run_report(
    out: str | Path,
    seed: int = 0,
    bits: tuple[int, ...] = DEFAULT_BITS,
    epochs: int = 200,
    hidden: int = 32,
    rounding: str = "nearest_even",
    overflow: str = "saturate",
    progress: bool = True,
    force: bool = False,
) -> dict:
    """Train, sweep word widths, and write the report files into ``out`` (an earlier report there is
    replaced only with ``force``). ``progress=False`` prints nothing. Returns the JSON record."""
    for b in bits:
        Format(b, 0)  # validates each width before anything runs or is written
    EPOCHS.check("epochs", epochs)
    SEED.check("seed", seed)
    check_modes(rounding, overflow)
    out = check_out_folder(out, force, "report.json", "a report")
    xtr, ytr, xte, yte = digits(seed)
    model = _mlp(seed, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in track(range(epochs), "float training", leave=False, disable=not progress):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xtr), ytr).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        float_acc = float((model(xte).argmax(1) == yte).float().mean())
        l1, l2 = model[0], model[2]
        calib_hidden = torch.relu(l1(xtr))
        calib_logits = model(xtr)
        named = {"input": xte, "fc1.weight": l1.weight, "fc1.bias": l1.bias, "fc2.weight": l2.weight, "fc2.bias": l2.bias}
        sweep, tensors = [], []
        for wb in track(bits, "word widths", disable=not progress):
            fmts = {name: _dyn_format(t, wb) for name, t in named.items()}
            q = {name: _q(t, fmts[name], rounding, overflow) for name, t in named.items()}
            h = torch.relu(q["input"] @ q["fc1.weight"].T + q["fc1.bias"])
            h = _q(h, _dyn_format(calib_hidden, wb), rounding, overflow)
            logits = _q(h @ q["fc2.weight"].T + q["fc2.bias"], _dyn_format(calib_logits, wb), rounding, overflow)
            sweep.append({"word_bits": wb, "accuracy": float((logits.argmax(1) == yte).float().mean())})
            for name, t in named.items():
                fx = quantize(t, fmts[name], rounding, overflow)
                err = (t.double() - fx.to_float()).abs()
                tensors.append(
                    {
                        "tensor": name,
                        "word_bits": wb,
                        "format": str(fmts[name]),
                        "sqnr_db": _sqnr_db(t.double(), fx.to_float()),
                        "max_abs_error": float(err.max()),
                        "overflows": fx.overflows,
                    }
                )
    record = {
        "model": f"MLP 64-{hidden}-10",
        "dataset": "digits (scikit-learn, 8x8)",
        "seed": seed,
        "rounding": rounding,
        "overflow": overflow,
        "n_test": len(yte),
        "float_accuracy": float_acc,
        "sweep": sweep,
        "tensors": tensors,
        "plot": "accuracy_vs_bits.png",
    }
    write_atomic(out / "accuracy_vs_bits.png", _plot(sweep, float_acc))
    write_atomic(out / "report.json", json.dumps(record, indent=2) + "\n")
    write_atomic(out / "report.md", render("quant_report.md.j2", **record))
    return record


def _plot(sweep: list[dict], float_acc: float) -> bytes:
    from fxp.plots import accuracy_vs_bits

    pts = [(r["word_bits"], r["accuracy"]) for r in sweep]
    return accuracy_vs_bits({"fixed point": pts}, float_acc, "word bits (sign included)")


# --- fxp report RUN: the same questions about a run of fxp train --------------------------------------
RUN_BITS_RANGE = (2, 32)  # FxConfig needs 2 bits at least; float32 cannot hold grids much wider than 32


def report_run(
    run: str | Path,
    out: str | Path,
    bits: tuple[int, ...] = DEFAULT_BITS,
    seed: int | None = None,
    calibrate: int = 2000,
    rounding: str | None = None,
    progress: bool = True,
    force: bool = False,
    epochs: int | None = None,
    overflow: str | None = None,
) -> dict:
    """Report on a run folder of ``fxp train`` (or its checkpoint.pt): its own summary and a post-training
    quantization sweep.

    For each word width the run's model is rebuilt in ``qat`` mode with weights and activations of
    that width, given the run's parameters, calibrated (max-abs) on ``calibrate`` training images and
    evaluated on the test set. ``seed`` picks the dataset split (default: the run's training seed);
    ``rounding`` defaults to the run's own. Writes ``report.json``, ``report.md`` and, unless the model
    is binarized (nothing to sweep), ``accuracy_vs_bits.png`` into ``out`` (an earlier report there is
    replaced only with ``force``). Returns the JSON record.

    ``epochs`` and ``overflow`` are :func:`run_report`'s, for the small MLP it trains; a run is not trained
    again and keeps its own overflow modes, so they are refused here (after the run's own checks).
    """
    run, out = run_folder(run), Path(out)
    metrics = read_run_metrics(run)
    widths = _check_widths(bits)
    if isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 1:
        raise FxpError(f"calibrate must be a whole number of training images >= 1, got {calibrate!r}")
    if seed is not None:
        SEED.check("seed", seed)
    if rounding is not None and rounding not in ROUNDING:
        raise FxpError(f"rounding={rounding!r} is not a rounding mode; use one of {', '.join(ROUNDING)}")
    check_out_folder(out, force, "report.json", "a report")
    mlp_only = [name for name, v in (("epochs", epochs), ("overflow", overflow)) if v is not None]
    if mlp_only:
        raise FxpError(f"{' and '.join(mlp_only)} {'apply' if len(mlp_only) > 1 else 'applies'} only without a run "
                       f"(to the small MLP the report trains); drop {', '.join('--' + n for n in mlp_only)} or the run")
    model = load_checkpoint(run / "checkpoint.pt")
    cfg: FxConfig = model.config
    rounding = rounding or cfg.rounding
    split_seed = metrics.get("recipe", {}).get("seed", 0) if seed is None else seed
    dataset = run_dataset(metrics)
    try:
        data = load(dataset, seed=split_seed)
    except FxpError as e:
        raise FxpError(f"cannot load the run's dataset {dataset!r} (named in {run / 'metrics.json'}): {e}") from None
    check_compatible(model.spec, data)
    binary = any(layer["type"] in BINARY_TYPES for layer in model.spec["layers"])

    checkpoint_acc = evaluate(model, data.x_test, data.y_test)
    summary = _run_summary(metrics, cfg, getattr(model, "binary", False))
    float_acc = checkpoint_acc if cfg.mode == "float" else summary["float_baseline_accuracy"]
    calib = data.x_train[:calibrate]
    sweep, skipped = [], None
    if binary:
        skipped = ("This model is binarized: its weights and activations are ±1, one bit each, so there are no "
                   "word widths to sweep." if getattr(model, "binary", False) else
                   "This is the float counterpart of a binarized topology: quantized, it becomes the binarized "
                   "network (train that in qat or fixed mode), which has no word widths to sweep.")
    else:
        widths_iter = track(widths, "post-training quantization, word widths", disable=not progress)
        for wb in widths_iter:
            acc, formats = _ptq_accuracy(model, _ptq_config(cfg, wb, rounding), calib, data)
            sweep.append({"word_bits": wb, "accuracy": acc, "formats": formats})
            widths_iter.set_postfix(bits=wb, accuracy=f"{100 * acc:.2f}%")
    record = {
        "run": str(run),
        "model": metrics.get("model") or model.spec.get("name"),
        "dataset": data.name,
        "seed": split_seed,
        "n_test": len(data.y_test),
        "binary": binary,
        "summary": summary,
        "checkpoint_accuracy": checkpoint_acc,
        "checkpoint_matches_metrics": checkpoint_acc == summary["test_accuracy"],
        "float_accuracy": float_acc,
        "ptq": None if binary else {"rounding": rounding, "calibration_images": len(calib), "accumulator_bits": 64},
        "sweep": sweep,
        "sweep_skipped": skipped,
        "plot": None if binary else "accuracy_vs_bits.png",
    }
    if not binary:
        from fxp.plots import accuracy_vs_bits

        references = {} if cfg.mode == "float" else {f"this run ({cfg.mode}, as trained)": checkpoint_acc}
        pts = [(r["word_bits"], r["accuracy"]) for r in sweep]
        write_atomic(out / "accuracy_vs_bits.png",
                     accuracy_vs_bits({"post-training quantization": pts}, float_acc,
                                      "word bits of weights and activations (sign included)", references=references))
    write_atomic(out / "report.json", json.dumps(record, indent=2) + "\n")
    write_atomic(out / "report.md", render("run_report.md.j2", format_table=_format_table(sweep), **record))
    return record


def _check_widths(bits: object) -> list[int]:
    lo, hi = RUN_BITS_RANGE
    try:
        widths = list(bits)
    except TypeError:
        widths = None
    if not widths or any(isinstance(b, bool) or not isinstance(b, int) or not lo <= b <= hi for b in widths):
        raise FxpError(f"bits must be word widths in {lo}..{hi}, got {bits!r}; give e.g. 4,8,16")
    return sorted(set(widths))


def _ptq_config(cfg: FxConfig, word_bits: int, rounding: str) -> FxConfig:
    """``cfg`` in ``qat`` mode with weights and activations of ``word_bits``, accumulators that never overflow."""
    return replace(cfg, mode="qat", weight_bits=word_bits, act_bits=word_bits, acc_bits=64, rounding=rounding)


def _ptq_accuracy(model: torch.nn.Module, cfg: FxConfig, calib: torch.Tensor,
                  data: Dataset) -> tuple[float, dict[str, str]]:
    """Test accuracy of ``model``'s parameters in the model built for ``cfg``, and its calibrated formats."""
    q = build(model.spec, cfg, seed=0)
    src = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    dst = {**dict(q.named_parameters()), **dict(q.named_buffers())}
    if src.keys() != dst.keys():
        raise FxpError(f"the rebuilt model's tensors {sorted(dst)} differ from the run's {sorted(src)}; "
                       "report this as a bug")
    q.eval()
    with torch.no_grad():
        for name, t in dst.items():
            t.copy_(src[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # stochastic rounding, if the run asked for it, draws the same numbers every time
        with torch.no_grad():
            q(calib)  # eval mode: each format without a scale takes it from this batch's max-abs
        acc = evaluate(q, data.x_test, data.y_test)
    formats = {name: str(t.fmt) for name, t in named_trackers(q).items() if t.frac_bits is not None}
    return acc, formats


def _run_summary(metrics: dict, cfg: FxConfig, binarized: bool) -> dict:
    mode = cfg.mode
    acc = f"accumulators {cfg.acc_bits} bits"
    widths = {"float": "float32",
              "qat": f"weights {cfg.weight_bits} bits, activations {cfg.act_bits} bits, {acc}",
              "fixed": f"activations {cfg.act_bits} bits, gradients {cfg.grad_bits} bits, "
                       f"stored parameters {cfg.update_bits} bits, {acc}"}[mode]
    if binarized:
        widths = "binarized: ±1 weights and activations"
    baseline = metrics.get("float_baseline", {}).get("test_accuracy")
    tensors = []
    for name, f in metrics.get("formats", {}).items():
        history = f.get("history") or []
        tensors.append({"tensor": name, "format": f["format"], "revisions": len(history),
                        "last_overflow_rate": history[-1]["overflow_rate"] if history else None})
    return {"mode": mode, "widths": widths, "epochs": len(metrics.get("epochs", [])),
            "test_accuracy": metrics["test_accuracy"], "float_baseline_accuracy": baseline,
            "accuracy_gap_points": metrics.get("accuracy_gap_points"), "tensors": tensors}


def _format_table(sweep: list[dict]) -> list[list[str]]:
    """One row per tensor: its calibrated format at each word width of the sweep."""
    names = list(sweep[0]["formats"]) if sweep else []
    return [[name, *(r["formats"].get(name, "—") for r in sweep)] for name in names]
