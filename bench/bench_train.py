"""Training-step time of LeNet-5 (batch 64): float, fxp qat, fxp fixed and Brevitas 8-bit QAT, one process.

    python bench/bench_train.py [--steps 60] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json, write_section  # noqa: E402

from fxp.layers import FixedPointSGD, FxConfig, snap_model, step_trackers  # noqa: E402
from fxp.models import build  # noqa: E402


def lenet5_float() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def lenet5_brevitas() -> nn.Module:
    import brevitas.nn as qnn

    return nn.Sequential(
        qnn.QuantIdentity(bit_width=8), qnn.QuantConv2d(1, 6, 5, padding=2, weight_bit_width=8), qnn.QuantReLU(bit_width=8),
        nn.MaxPool2d(2), qnn.QuantConv2d(6, 16, 5, weight_bit_width=8), qnn.QuantReLU(bit_width=8), nn.MaxPool2d(2),
        nn.Flatten(), qnn.QuantLinear(400, 120, bias=True, weight_bit_width=8), qnn.QuantReLU(bit_width=8),
        qnn.QuantLinear(120, 84, bias=True, weight_bit_width=8), qnn.QuantReLU(bit_width=8),
        qnn.QuantLinear(84, 10, bias=True, weight_bit_width=8),
    )


def setups() -> dict:
    torch.manual_seed(0)
    out = {}
    m = lenet5_float()
    out["float32 (plain torch LeNet-5)"] = (m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), None)
    cfg = FxConfig(mode="qat", act_bits=8, weight_bits=8)
    m = build("lenet5", cfg)
    out["fxp qat (8-bit weights and activations)"] = (m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), m)
    cfg = FxConfig(mode="fixed", act_bits=10, grad_bits=10, update_bits=12)
    m = build("lenet5", cfg)
    snap_model(m)
    out["fxp fixed (10-bit propagations, 12-bit updates)"] = (m, FixedPointSGD(m, 0.05, 0.9, generator=torch.Generator().manual_seed(0)), m)
    m = lenet5_brevitas()
    out["Brevitas 0.13.4 8-bit QAT"] = (m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), None)
    return out


def time_steps(model, opt, fx, x, y, steps: int, warmup: int = 10) -> float:
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if fx is not None:
            step_trackers(fx)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t) / steps)
    return sorted(times)[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--json", default="runs/bench/bench_train.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    rows = []
    for name, (model, opt, fx) in setups().items():
        rows.append({"impl": name, "ms_per_step": 1e3 * time_steps(model, opt, fx, x, y, args.steps)})
    base = rows[0]["ms_per_step"]
    targets = {"fxp qat": 1.5, "fxp fixed": 3.0}
    lines = ["Command: `python bench/bench_train.py --write-docs`  ", f"Machine: {machine()}", "",
             "| LeNet-5, batch 64 | ms per step | × float | target |", "|---|---:|---:|---|"]
    for r in rows:
        r["ratio_to_float"] = r["ms_per_step"] / base
        tgt = next((t for k, t in targets.items() if r["impl"].startswith(k)), None)
        r["target"] = tgt
        mark = "" if tgt is None else f"≤ {tgt}× ({'met' if r['ratio_to_float'] <= tgt else 'NOT met'})"
        lines.append(f"| {r['impl']} | {r['ms_per_step']:.2f} | {r['ratio_to_float']:.2f}× | {mark} |")
    md = "\n".join(lines)
    print(md)
    save_json(args.json, {"machine": machine(), "rows": rows})
    if args.write_docs:
        write_section("bench_train", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
