"""Weight quantizers at equal bits per weight on LeNet-300-100 (Fashion-MNIST): k-means sharing, product and
residual quantization, beside 8-bit uniform and binary weights.

    python bench/bench_quantizers.py [--run runs/models/int8-lenet300] [--bits 2,3,4,5] [--write-docs]

Post-training, as Gong et al. (2014) compare them: every layer of the reference run (bench_models.py's
qat LeNet-300-100) gets its weights replaced by a quantizer's reconstruction, and the model is evaluated
in float, so that only the weight quantizer differs. No retraining (``fxp compress --share-bits`` adds
it for k-means). At ``b`` bits per weight:

- **k-means** (Deep Compression's sharing, linear init): ``2**b`` centroids a layer;
- **product quantization**: each row cut into sub-vectors of ``D`` weights, one codebook of ``k``
  codewords per column block over the rows, ``(D, k)`` chosen per layer as the setting whose exact bits
  per weight (indices and 32-bit codebooks) come closest to ``b`` without exceeding it: with a few
  hundred rows the codebooks weigh, which is why product quantization suits wide layers with many rows
  (a layer no setting fits, the 10-row classifier, gets scalar blocks with nearly a codeword a row);
- **residual quantization**: all of a layer's 4-weight sub-vectors, ``b`` stages of 16 codewords (one
  bit per weight a stage), each stage clustering what the ones before left;
- **uniform 8-bit**: per-channel symmetric, torch's observer (``fxp/compress/uniform.py``);
- **binary**: ``sign(w)`` times the mean ``|w|`` of its output channel (BWN), one bit per weight.

Bits per weight are exact: indices and codebooks (32-bit centroids), over the layers' weights; the
rate is against float32.

    python bench/bench_quantizers.py --uniform-qat [--uniform-out runs/uniform] [--again] [--write-docs]

**Uniform quantization-aware training** (its own section, ``bench_uniform_qat``): a float LeNet-300-100
trained with int8-lenet300's recipe (``fxp train --mode float``, 15 epochs, batch 64, seed 0; trained
into ``runs/uniform/float-lenet300`` if it is not there), then ``fxp compress --uniform B`` (affine, per
channel) at 8, 4, 3 and 2 bits: on the grid without retraining (post-training), retrained
:data:`QAT_EPOCHS` epochs on the grid (straight-through), and the same with the range regularizer at the
strength a sweep over :data:`SWEEP` at :data:`SWEEP_BITS` bits picks (the best mean accuracy). The
retrained runs are exported (``fxp export --scales per-channel``) and their integer models run through
the golden model on the whole test set. A result already in ``runs/uniform`` is reused unless ``--again``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json, write_section  # noqa: E402

from fxp.binary import bwn_weight  # noqa: E402
from fxp.compress import sharing, uniform  # noqa: E402
from fxp.compress.prune import prunable  # noqa: E402
from fxp.datasets import load  # noqa: E402
from fxp.layers import FxConfig  # noqa: E402
from fxp.models import build  # noqa: E402
from fxp.train import evaluate, load_checkpoint, read_run_metrics, run_dataset  # noqa: E402

VECTOR = 4  # the sub-vector length of residual quantization (and of product quantization where b D <= 8 allows)


def _kmeans(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    s = sharing.share_weights(w, bits=b)
    return s.dense(), s.storage_bits()


def _pq_setting(rows: int, cols: int, b: int) -> tuple[int, int]:
    """The (sub-vector length D, codewords k) whose exact bits per weight come closest to ``b`` without
    exceeding it: indices (``log2 k`` a row a block) and 32-bit codebooks (``k D`` a block) both count."""
    def bits(d: int, lk: int) -> float:
        return (cols // d) * (rows * lk + (1 << lk) * d * sharing.CODEBOOK_BITS) / (rows * cols)
    settings = [(bits(d, lk), d, 1 << lk) for d in (1, 2, 4, 8, 16) if cols % d == 0
                for lk in range(1, 9) if (1 << lk) <= rows]
    fitting = [x for x in settings if x[0] <= b]
    if not fitting:  # a layer of few rows (the classifier): nearly one codeword a row, whatever it costs
        return 1, max(k for _, _, k in settings)
    _, d, k = max(fitting)
    return d, k


def _pq(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    m = w.flatten(1)
    d, k = _pq_setting(*m.shape, b)
    q = sharing.product_quantize(m, m.shape[1] // d, k)
    return q.dense().view_as(w), q.storage_bits()


def _rq(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    vectors = w.reshape(-1, VECTOR)
    q = sharing.residual_quantize(vectors, b, 16)
    return q.dense().view_as(w), q.storage_bits()


def _uniform8(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    deq = torch.as_tensor(uniform.fake_quantize(w, 8, symmetric=True, per_channel=True))
    return deq.view_as(w), 8 * uniform.uniform_bytes(w.numel(), 8, w.shape[0])


def _binary(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    return bwn_weight(w), w.numel() + 32 * w.shape[0]


QAT_EPOCHS = 3
UNIFORM_BITS = (8, 4, 3, 2)
SWEEP = (0.0003, 0.001, 0.003, 0.03, 0.3)  # range regularizer strengths tried
SWEEP_BITS = (4, 2)
FLOAT_RUN = ["--model", "lenet300", "--dataset", "fashion-mnist", "--mode", "float", "--epochs", "15",
             "--batch-size", "64", "--seed", "0"]  # bench_models.py's int8-lenet300 recipe, in float mode

METHODS = {"k-means": _kmeans, "product": _pq, "residual": _rq}
FIXED = {"uniform 8-bit": _uniform8, "binary (BWN)": _binary}


def quantized_accuracy(run: Path, fn, b: int, data) -> tuple[float, float]:
    """Test accuracy with every layer's weights replaced by ``fn``'s reconstruction; exact bits per weight."""
    trained = load_checkpoint(run / "checkpoint.pt")
    model = build(trained.spec, FxConfig(mode="float"))
    # the parameters only: a float model keeps no formats (its trackers differ from the qat run's)
    model.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.endswith("_extra_state")},
                          strict=False)
    model.eval()
    bits = weights = 0
    with torch.no_grad():
        for m in prunable(model).values():
            w = m.weight.detach().clone()
            rebuilt, stored = fn(w, b)
            m.weight.copy_(rebuilt.to(w.dtype))
            bits, weights = bits + stored, weights + w.numel()
    return evaluate(model, data.x_test, data.y_test), bits / weights


def _fxp(*argv) -> None:
    from fxp.cli import main as fxp

    argv = [str(a) for a in argv]
    print("fxp " + " ".join(argv), flush=True)
    if fxp(argv) != 0:
        raise SystemExit(f"fxp {' '.join(argv)} failed")


def _compressed(root: Path, ref: Path, bits: int, epochs: int, lam: float, again: bool) -> dict:
    """``fxp compress --uniform`` of the float run (reused when already there): its report's uniform record."""
    name = f"u{bits}-" + ("ptq" if not epochs else "qat" if not lam else f"reg{lam:g}")
    out = root / name
    if again or not (out / "report.json").is_file():
        _fxp("compress", ref, "--out", out, "--uniform", bits, "--uniform-scheme", "affine", "--retrain-epochs", epochs,
             "--range-reg", lam, "--quiet", "--force")
    rec = json.loads((out / "report.json").read_text())
    fc1 = next(r for r in rec["uniform"]["layers"] if r["layer"] == "fc1")
    return {**{k: rec["uniform"][k] for k in ("accuracy_before", "accuracy_quantized", "accuracy_after")},
            "run": str(out), "fc1_range_before": fc1["before"]["channel_range_mean"],
            "fc1_range_after": fc1["after"]["channel_range_mean"], "seconds": rec.get("seconds")}


def _golden(run: str, again: bool) -> dict:
    """Export the run per channel and run its integer model through the golden model (every test image)."""
    from sim.predict import run_predict

    desc, rec_path = Path(run) / "model.fxpm", Path(run) / "predict.json"
    if again or not rec_path.is_file():
        _fxp("export", run, "--out", desc, "--scales", "per-channel", "--weights", "affine", "--force")
        rec = run_predict(desc, load("fashion-mnist"), run=run)
        save_json(rec_path, rec)
    return json.loads(rec_path.read_text())


def uniform_qat(args) -> int:
    root = Path(args.uniform_out)
    ref = root / "float-lenet300"
    if args.again or not (ref / "metrics.json").is_file():
        _fxp("train", *FLOAT_RUN, "--quiet", "--force", "--out", ref)
    sweep = {lam: [_compressed(root, ref, b, QAT_EPOCHS, lam, args.again)["accuracy_after"] for b in SWEEP_BITS]
             for lam in SWEEP}
    best = max(SWEEP, key=lambda lam: sum(sweep[lam]))
    rows = []
    for b in UNIFORM_BITS:
        ptq = _compressed(root, ref, b, 0, 0.0, args.again)
        qat = _compressed(root, ref, b, QAT_EPOCHS, 0.0, args.again)
        reg = _compressed(root, ref, b, QAT_EPOCHS, best, args.again)
        g_qat, g_reg = _golden(qat["run"], args.again), _golden(reg["run"], args.again)
        rows.append({"bits": b, "float": ptq["accuracy_before"], "ptq": ptq["accuracy_after"], "qat": qat["accuracy_after"],
                     "reg": reg["accuracy_after"], "golden_qat": g_qat["golden_accuracy"],
                     "golden_reg": g_reg["golden_accuracy"],
                     "mismatches": g_qat["integer_mismatches"] + g_reg["integer_mismatches"],
                     "fc1_range": (ptq["fc1_range_after"], qat["fc1_range_after"], reg["fc1_range_after"])})
        print(rows[-1], flush=True)
    mach = machine()
    save_json(Path(args.uniform_json), {"machine": mach, "reference": str(ref), "sweep": {str(k): v for k, v in sweep.items()},
                                        "lambda": best, "rows": rows})
    lines = [f"Command: `python bench/bench_quantizers.py --uniform-qat --write-docs`, on {mach}. A float LeNet-300-100 "
             f"(`{ref}`: `fxp train {' '.join(FLOAT_RUN)}`, {100 * rows[0]['float']:.2f} %), its weights on an affine "
             f"per-channel uniform grid (`fxp compress --uniform B`): without retraining, retrained {QAT_EPOCHS} epochs "
             f"on the grid (`--retrain-epochs {QAT_EPOCHS}`, learning rate a tenth of the run's), and the same with the "
             f"range regularizer (`--range-reg {best:g}`, the best of {', '.join(f'{x:g}' for x in SWEEP)} at "
             f"{' and '.join(map(str, SWEEP_BITS))} bits). Test accuracy of the PyTorch model (its weights exactly "
             "the grid's values), and of the exported integer model (`fxp export --scales per-channel`: int8 "
             "activations, the weights' codes) through the golden model; fc1's mean channel range (max − min) "
             "after each.", "",
             "| bits | no retraining | QAT | QAT + range reg. | golden: QAT | golden: QAT + range reg. | "
             "fc1 channel range (none / QAT / reg.) |", "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['bits']} | {100 * r['ptq']:.2f} % | {100 * r['qat']:.2f} % | {100 * r['reg']:.2f} % | "
                     f"{100 * r['golden_qat']:.2f} % | {100 * r['golden_reg']:.2f} % | "
                     + " / ".join(f"{x:.3f}" for x in r["fc1_range"]) + " |")
    lines += ["", "Range regularizer sweep (QAT accuracy at " + ", ".join(f"{b} bits" for b in SWEEP_BITS) + "): "
              + "; ".join(f"λ = {lam:g}: " + ", ".join(f"{100 * a:.2f} %" for a in accs) for lam, accs in sweep.items())
              + ". Integer outputs golden vs PyTorch integer path: "
              + f"{sum(r['mismatches'] for r in rows)} mismatched."]
    md = "\n".join(lines)
    print(md)
    if args.write_docs:
        write_section("bench_uniform_qat", md)
    return 1 if any(r["mismatches"] for r in rows) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/models/int8-lenet300", type=Path)
    ap.add_argument("--bits", default="2,3,4,5")
    ap.add_argument("--json", default="runs/bench/bench_quantizers.json")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--uniform-qat", action="store_true", help="the uniform quantization-aware training table instead")
    ap.add_argument("--uniform-out", default="runs/uniform")
    ap.add_argument("--uniform-json", default="runs/bench/bench_uniform_qat.json")
    ap.add_argument("--again", action="store_true", help="with --uniform-qat: rerun what runs/uniform holds already")
    args = ap.parse_args()
    if args.uniform_qat:
        return uniform_qat(args)
    metrics = read_run_metrics(args.run)
    data = load(run_dataset(metrics))
    reference = quantized_accuracy(args.run, lambda w, b: (w, 32 * w.numel()), 32, data)[0]
    rows = []
    for name, fn in [*((n, f) for n, f in METHODS.items()), *FIXED.items()]:
        for b in ([int(x) for x in args.bits.split(",")] if name in METHODS else [None]):
            t = time.perf_counter()
            acc, bpw = quantized_accuracy(args.run, fn, b, data)
            rows.append({"method": name, "nominal_bits": b, "bits_per_weight": bpw, "accuracy": acc,
                         "rate_float32": 32 / bpw, "seconds": time.perf_counter() - t})
            print(rows[-1], flush=True)
    mach = machine()
    save_json(Path(args.json), {"machine": mach, "run": str(args.run), "reference_float": reference, "rows": rows})
    lines = [f"Command: `python bench/bench_quantizers.py --write-docs`, on {mach}. {metrics['model']} "
             f"(`{args.run}`), its weights quantized after training and evaluated in float (no retraining): "
             f"{100 * reference:.2f} % with its own weights. Bits per weight exact, codebooks included; the rate "
             "is against float32.", "",
             "| method | bits (nominal) | bits per weight | × below float32 | test accuracy |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['nominal_bits'] or '–'} | {r['bits_per_weight']:.3f} | "
                     f"{r['rate_float32']:.1f}× | {100 * r['accuracy']:.2f} % |")
    md = "\n".join(lines)
    print(md)
    if args.write_docs:
        write_section("bench_quantizers", md)
    print(json.dumps({"reference_float": reference}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
