"""``fxp report``: how few bits does a small model need? A quantization report on embedded data.

Trains a float MLP on the 8x8 digits, then for each word width quantizes every weight, the input and
every activation to its own dynamic format (max-abs initializer) and measures accuracy and
per-tensor error. Writes ``report.json``, ``report.md`` and ``accuracy_vs_bits.png``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from fxp.datasets import digits
from fxp.dynamic import max_abs_frac_bits
from fxp.errors import FxpError
from fxp.format import Format
from fxp.quantize import quantize
from fxp.resources import render, write_atomic

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
) -> dict:
    """Train, sweep word widths, and write the report files into ``out``. Returns the JSON record."""
    for b in bits:
        Format(b, 0)  # validates each width before anything runs or is written
    out = Path(out)
    xtr, ytr, xte, yte = digits(seed)
    model = _mlp(seed, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in tqdm(range(epochs), desc="float training", leave=False):
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
        for wb in tqdm(bits, desc="word widths"):
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
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "accuracy_vs_bits.png", _plot(sweep, float_acc))
    write_atomic(out / "report.json", json.dumps(record, indent=2) + "\n")
    write_atomic(out / "report.md", render("quant_report.md.j2", **record))
    return record


def _plot(sweep: list[dict], float_acc: float) -> bytes:
    from fxp.plots import accuracy_vs_bits

    pts = [(r["word_bits"], r["accuracy"]) for r in sweep]
    return accuracy_vs_bits({"fixed point": pts}, float_acc, "word bits (sign included)")


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FxpError(f"--out {out} is a file; give a folder to write the report into")
