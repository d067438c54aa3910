"""Train, export and verify the reference integer models on their full test sets.

    python bench/bench_models.py [--epochs 15] [--out runs/models] [--write-docs] [--only NAME]

For each model: train it (and its float baseline, same recipe and seed), export the integer model
description, run the golden model and the PyTorch integer path on every test image, and record the
accuracies and the number of mismatched integers (must be 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_only, machine, only, save_json, write_section  # noqa: E402

from fxp.datasets import load  # noqa: E402
from fxp.export import export  # noqa: E402
from fxp.layers import FxConfig  # noqa: E402
from fxp.train import Recipe, run_train  # noqa: E402
from sim.predict import run_predict  # noqa: E402

MODELS = {
    # name: (model, dataset, config, recipe overrides (epochs too: else --epochs), export scales)
    "int8-lenet5": ("lenet5", "fashion-mnist",
                    FxConfig(mode="qat", act_bits=8, weight_bits=8, rounding="nearest_up"), {"batch_size": 64}, "pow2"),
    "int8-lenet300": ("lenet300", "fashion-mnist",
                      FxConfig(mode="qat", act_bits=8, weight_bits=8, rounding="nearest_up"), {"batch_size": 64},
                      "pow2"),
    "sfc-bnn": ("sfc_bnn", "fashion-mnist", FxConfig(mode="qat"), {"batch_size": 64, "optimizer": "adam", "lr": 0.005}, None),
    "sfc-mixed": ("sfc_mixed", "fashion-mnist", FxConfig(mode="qat"),
                  {"batch_size": 64, "optimizer": "adam", "lr": 0.005, "epochs": 20}, None),
    "bnn-digits": ("bnn_digits", "digits", FxConfig(mode="qat"), {"batch_size": 64, "optimizer": "adam", "lr": 0.01},
                   None),
    "int8-digits-mlp": ("digits_mlp", "digits", FxConfig(mode="qat", act_bits=8, weight_bits=8, rounding="nearest_up"),
                        {"batch_size": 64}, "pow2"),
    "cnv-bnn": ("cnv_bnn", "fashion-mnist", FxConfig(mode="qat"), {"batch_size": 64, "optimizer": "adam", "lr": 0.005},
                None),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", default="runs/models")
    add_only(ap, MODELS)
    ap.add_argument("--json", default="runs/bench/bench_models.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    names = only(args, MODELS)
    rows = []
    for name in names:
        model, dataset, cfg, overrides, scales = MODELS[name]
        data = load(dataset)
        run = Path(args.out) / name
        t = time.perf_counter()
        recipe = Recipe(**{"epochs": args.epochs, **overrides})  # a model may set its own epochs
        m = run_train(model, data, cfg, recipe, run, baseline=True, force=True)
        export(run, run / "model.fxpm", scales=scales, force=True)
        rec = run_predict(run / "model.fxpm", data, run=run)
        rows.append({"name": name, "model": model, "dataset": dataset, "epochs": recipe.epochs,
                     "float": m["float_baseline"]["test_accuracy"],
                     "fake_quantized": rec["fake_quantized_accuracy"], "golden": rec["golden_accuracy"],
                     "mismatches": rec["integer_mismatches"], "compared": rec["integer_outputs_compared"],
                     "images": rec["images"], "seconds": time.perf_counter() - t})
        save_json(run / "accuracy.json", rows[-1])  # bench_network.py reports it beside the hardware's
        print(rows[-1], flush=True)
    # the table: every model's latest recorded run (this one's, and earlier --only runs' of the others)
    recorded = [Path(args.out) / name / "accuracy.json" for name in MODELS]
    rows = [json.loads(path.read_text()) for path in recorded if path.is_file()]
    lines = ["Command: `python bench/bench_models.py [--only NAME,..] [--epochs N] --write-docs` (each model's "
             "latest run, its epochs in the table)  ", f"Machine: {machine()}", "",
             "| model | dataset | epochs | float baseline | PyTorch fake-quantized | golden (integer) | golden − float | "
             "mismatched integers (golden vs PyTorch integer path) |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        epochs = r.get("epochs") or len(json.loads((Path(args.out) / r["name"] / "metrics.json").read_text())["epochs"])
        lines.append(f"| {r['name']} ({r['model']}) | {r['dataset']} ({r['images']} test images) | {epochs} | "
                     f"{100 * r['float']:.2f} % | "
                     f"{100 * r['fake_quantized']:.2f} % | {100 * r['golden']:.2f} % | {100 * (r['golden'] - r['float']):+.2f} | "
                     f"{r['mismatches']} of {r['compared']:,} |")
    md = "\n".join(lines)
    print(md)
    save_json(args.json, {"machine": machine(), "rows": rows})
    if args.write_docs:
        write_section("bench_models", md)
    return 1 if any(r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
