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
    scale, zero = uniform.scale_zero_point(w, 8, symmetric=True, per_channel=True)
    q = uniform.quantize(w, scale, zero, 8, axis=0, symmetric=True)
    deq = torch.as_tensor(uniform.dequantize(q, scale, zero, axis=0))
    return deq.view_as(w), 8 * uniform.uniform_bytes(w.numel(), 8, w.shape[0])


def _binary(w: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    alpha = w.flatten(1).abs().mean(1).view(-1, *([1] * (w.dim() - 1)))
    return torch.where(w >= 0, alpha, -alpha), w.numel() + 32 * w.shape[0]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/models/int8-lenet300", type=Path)
    ap.add_argument("--bits", default="2,3,4,5")
    ap.add_argument("--json", default="runs/bench/bench_quantizers.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
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
