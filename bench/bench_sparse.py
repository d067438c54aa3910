"""Sparse against dense inference of LeNet-300-100 on the CPU (torch float32), and its sparse storage size.

    python bench/bench_sparse.py [--threads 1] [--min-run-time 0.2] [--rounds 3]
                                 [--out runs/bench/sparse.json] [--write-docs]

Deep Compression prunes LeNet-300-100 to 8 % of its weights (Han et al. 2016, Table 2). Does a pruned layer
then run faster as a sparse matrix product than as the dense one with its zeros? For each weight matrix
(out, in) of LeNet-300-100, 784→300, 300→100 and 100→10, at sparsities 50 % to 99 % (random normal
magnitudes, a random mask removing exactly round(sparsity × size) weights, seeded), and for the whole
forward pass (three layers, biases, ReLU between):

- dense: ``torch.nn.functional.linear(x, W)``, x (batch, in) — the zeros multiplied like any weight;
- sparse: ``W.to_sparse_csr()`` multiplied by the activations kept feature-major, (in, batch) contiguous:
  ``W_csr @ xT`` (MKL's CSR times dense), and ``torch.mv(W_csr, x)`` at batch 1. A sparse network keeps
  its activations in that layout from layer to layer (yT = W xT), so only its input is transposed, once;
  the forward pass times that transposition. The op survey printed first shows why these ops: the
  alternatives (``torch.sparse.mm`` on the transposed view, ``F.linear`` with a CSR weight, ``addmm``,
  dense times a transposed CSR) are as fast or slower.

Batch 1 is the latency case (one image: a matrix-vector product); batch 64 is the throughput case (a
matrix product, in which dense GEMM reuses each weight across the batch). A time is the median of
``torch.utils.benchmark.Timer.blocked_autorange`` in µs, and of that over ``--rounds`` sweeps of all the
cases (load from other jobs comes in bursts; the median over sweeps drops one). One torch thread by
default: ``--threads 1,default`` adds torch's own count, but on a machine shared with other jobs its
OpenMP threads wait out the scheduler's time slices (cases took 8 or 16 ms where one thread takes 20 µs),
so time more threads only on an idle machine. The break-even sparsity of a layer and batch is the lowest
measured sparsity at which sparse is faster than dense ("none up to 99 %" if none is).

Storage: bytes of the relative-index CSR of :mod:`fxp.compress.sparse` (4-bit and 8-bit gap codes, filler
zeros and row pointers, each as wide as the entry count needs, included) with 32-bit and 8-bit values, against dense 32-bit and 8-bit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json, write_section  # noqa: E402

from fxp.compress.sparse import SparseMatrix  # noqa: E402
from fxp.progress import track  # noqa: E402

LAYERS = {"fc1 784→300": (300, 784), "fc2 300→100": (100, 300), "fc3 100→10": (10, 100)}
FORWARD = "LeNet-300-100 forward"
SPARSITIES = (0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.99)
BATCHES = (1, 64)
INDEX_BITS = (4, 8)
VALUE_BITS = (32, 8)


def pruned(out_f: int, in_f: int, sparsity: float, seed: int) -> torch.Tensor:
    """A random normal (out, in) weight with exactly round(sparsity × size) zeros at random places."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    n = w.numel()
    w.view(-1)[torch.randperm(n, generator=g)[: round(sparsity * n)]] = 0
    return w


def weights(sparsity: float) -> dict[str, torch.Tensor]:
    """The three pruned layers at one sparsity; the seed depends on layer and sparsity only."""
    return {name: pruned(*shape, sparsity, seed=1000 * i + round(100 * sparsity))
            for i, (name, shape) in enumerate(LAYERS.items())}


def time_layer(w: torch.Tensor, x: torch.Tensor, threads: int, min_run_time: float) -> dict:
    """µs of one layer: dense F.linear(x, W) against CSR, matrix-vector at batch 1, else W_csr @ xT."""
    w_csr = w.to_sparse_csr()
    if len(x) == 1:
        v = x[0]

        def sparse():
            return torch.mv(w_csr, v)
    else:
        xt = x.t().contiguous()  # feature-major, as a sparse network keeps its activations

        def sparse():
            return w_csr @ xt

    assert torch.allclose(sparse().reshape(w.shape[0], len(x)).t(), F.linear(x, w), atol=1e-4)
    return {"dense_us": median_us(lambda: F.linear(x, w), threads, min_run_time),
            "sparse_us": median_us(sparse, threads, min_run_time)}


def median_us(fn, threads: int, min_run_time: float) -> float:
    fn()  # warm-up: first-call allocations and MKL's setup stay out of the median
    return Timer("fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(
        min_run_time=min_run_time).median * 1e6


def survey(threads: int, min_run_time: float) -> list[dict]:
    """The CSR ops that compute fc1 at 90 % sparsity, timed, to show which one the bench uses and why."""
    w = pruned(*LAYERS["fc1 784→300"], 0.9, seed=7)
    rows = []
    for batch in BATCHES:
        x = torch.randn(batch, w.shape[1], generator=torch.Generator().manual_seed(1))
        for op, fn in _candidates(w, x).items():
            rows.append({"op": op, "batch": batch, "threads": threads, "us": median_us(fn, threads, min_run_time)})
    return rows


def _candidates(w: torch.Tensor, x: torch.Tensor) -> dict:
    """Each way torch offers to compute F.linear(x, w) with w in CSR, and the dense one."""
    w_csr, w_t_csr, xt = w.to_sparse_csr(), w.t().to_sparse_csr(), x.t().contiguous()
    bias = torch.zeros(w.shape[0], 1)
    ops = {"F.linear(x, W) (dense)": lambda: F.linear(x, w),
           "W_csr @ xT (xT contiguous)": lambda: w_csr @ xt,
           "torch.sparse.mm(W_csr, x.T) (transposed view)": lambda: torch.sparse.mm(w_csr, x.t()),
           "torch.addmm(b, W_csr, xT)": lambda: torch.addmm(bias, w_csr, xt),
           "F.linear(x, W_csr)": lambda: F.linear(x, w_csr),
           "x @ (W.T)_csr": lambda: x @ w_t_csr}
    if len(x) == 1:
        ops["torch.mv(W_csr, x)"] = lambda: torch.mv(w_csr, x[0])
    return ops


def time_layers(threads: int, min_run_time: float, rounds: int) -> list[dict]:
    """Every layer and the forward pass at every sparsity and batch, ``rounds`` times over.

    The whole sweep is repeated rather than each case, so that a burst of load from other jobs lands
    on one round of many cases, and the median over rounds discards it.
    """
    samples: dict[tuple, list[dict]] = {}
    cases = [(r, s, b) for r in range(rounds) for s in SPARSITIES for b in BATCHES]
    bar = track(cases, f"{threads} thread(s)")
    for _, sparsity, batch in bar:
        ws = weights(sparsity)
        g = torch.Generator().manual_seed(batch)
        for name, w in ws.items():
            x = torch.randn(batch, w.shape[1], generator=g)
            samples.setdefault((sparsity, name, batch), []).append(time_layer(w, x, threads, min_run_time))
        samples.setdefault((sparsity, FORWARD, batch), []).append(time_forward(ws, batch, threads, min_run_time))
        bar.set_postfix(sparsity=sparsity, batch=batch)
    rows = []
    for (sparsity, layer, batch), runs in samples.items():
        row = {"sparsity": sparsity, "layer": layer, "batch": batch, "threads": threads}
        for k in ("dense_us", "sparse_us"):
            row[k] = statistics.median(r[k] for r in runs)
            row[k.replace("_us", "_us_rounds")] = [r[k] for r in runs]
        row["ratio"] = row["sparse_us"] / row["dense_us"]
        rows.append(row)
    return rows


def time_forward(ws: dict[str, torch.Tensor], batch: int, threads: int, min_run_time: float) -> dict:
    """The whole network, input (batch, 784) to logits: dense F.linear against CSR in feature-major layout."""
    g = torch.Generator().manual_seed(100 + batch)
    dense = [(w, 0.1 * torch.randn(w.shape[0], generator=g)) for w in ws.values()]
    csr = [(w.to_sparse_csr(), b if batch == 1 else b[:, None]) for w, b in dense]
    x = torch.randn(batch, dense[0][0].shape[1], generator=g)

    def forward_dense():
        h = x
        for i, (w, b) in enumerate(dense):
            h = F.linear(h, w, b)
            h = F.relu(h) if i < len(dense) - 1 else h
        return h

    def forward_sparse():
        h = x[0] if batch == 1 else x.t().contiguous()  # feature-major from here on
        for i, (w, b) in enumerate(csr):
            h = (torch.mv(w, h) if batch == 1 else w @ h).add_(b)
            h = h.relu_() if i < len(csr) - 1 else h
        return h if batch == 1 else h.t()

    assert torch.allclose(forward_sparse().reshape(batch, -1), forward_dense(), atol=1e-3)
    return {"dense_us": median_us(forward_dense, threads, min_run_time),
            "sparse_us": median_us(forward_sparse, threads, min_run_time)}


def storage() -> list[dict]:
    """Bytes of each layer and of the network: dense, and relative-index CSR per index and value width."""
    rows = []
    for sparsity in SPARSITIES:
        total: dict[str, int] = {}
        for name, w in weights(sparsity).items():
            row = {"sparsity": sparsity, "layer": name, "weights": w.numel(), "nonzero": int(w.count_nonzero())}
            for vb in VALUE_BITS:
                row[f"dense_v{vb}"] = w.numel() * vb // 8
            for ib in INDEX_BITS:
                m = SparseMatrix.encode(w.numpy(), ib)
                row[f"fillers_i{ib}"] = m.fillers
                for vb in VALUE_BITS:
                    row[f"csr_i{ib}_v{vb}"] = m.nbytes(vb)
            rows.append(row)
            for k, v in row.items():
                if k not in ("sparsity", "layer"):
                    total[k] = total.get(k, 0) + v
        rows.append({"sparsity": sparsity, "layer": "LeNet-300-100", **total})
    return rows


def break_even(rows: list[dict]) -> list[dict]:
    """Per threads, layer and batch: the lowest measured sparsity at which sparse beats dense, or None.

    ``from_on`` is the lowest sparsity from which sparse stays faster at every higher one measured; it
    differs from ``sparsity`` only where timing noise makes one sparsity an exception.
    """
    out = []
    keys = dict.fromkeys((r["threads"], r["layer"], r["batch"]) for r in rows)
    for threads, layer, batch in keys:
        mine = sorted((r for r in rows if (r["threads"], r["layer"], r["batch"]) == (threads, layer, batch)),
                      key=lambda r: r["sparsity"])
        faster = [r["sparsity"] for r in mine if r["ratio"] < 1]
        from_on = None
        for r in reversed(mine):
            if r["ratio"] >= 1:
                break
            from_on = r["sparsity"]
        out.append({"threads": threads, "layer": layer, "batch": batch, "sparsity": faster[0] if faster else None,
                    "from_on": from_on})
    return out


def _pct(s: float | None) -> str:
    return "none up to 99 %" if s is None else f"{100 * s:g} %"


def markdown(surveyed: list[dict], rows: list[dict], even: list[dict], sizes: list[dict], args, mach: str) -> str:
    lines = [(f"Command: `python bench/bench_sparse.py --threads {args.threads} --min-run-time {args.min_run_time} "
              f"--rounds {args.rounds}`  "),
             f"Machine: {mach}", "",
             "CSR ops for fc1 (784→300) at 90 % sparsity, µs (median of blocked_autorange):", "",
             "| op | batch | threads | µs |", "|---|---:|---:|---:|"]
    lines += [f"| {r['op']} | {r['batch']} | {r['threads']} | {r['us']:.1f} |" for r in surveyed]
    for threads in dict.fromkeys(r["threads"] for r in rows):
        lines += ["", (f"Sparse (W_csr @ xT; torch.mv at batch 1) against dense (F.linear), {threads} torch "
                       f"thread{'s' if threads > 1 else ''}, µs:"), "",
                  "| sparsity | layer | batch | dense µs | sparse µs | sparse/dense |",
                  "|---:|---|---:|---:|---:|---:|"]
        lines += [f"| {100 * r['sparsity']:g} % | {r['layer']} | {r['batch']} | {r['dense_us']:.1f} | "
                  f"{r['sparse_us']:.1f} | {r['ratio']:.2f} |" for r in rows if r["threads"] == threads]
    lines += ["", "Break-even sparsity (the lowest measured at which sparse is faster):", "",
              "| threads | layer | batch | break-even | faster from there on |", "|---:|---|---:|---|---|"]
    lines += [f"| {e['threads']} | {e['layer']} | {e['batch']} | {_pct(e['sparsity'])} | {_pct(e['from_on'])} |"
              for e in even]
    lines += ["", ("Storage of the whole network in bytes (relative-index CSR: filler zeros and row pointers "
                   "included; per layer in the JSON):"), "",
              ("| sparsity | dense 32-bit | CSR 4-bit gaps | CSR 8-bit gaps | dense 8-bit | CSR 4-bit gaps | "
               "CSR 8-bit gaps | fillers (4-bit / 8-bit gaps) |"), "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in (r for r in sizes if r["layer"] == "LeNet-300-100"):
        cells = []
        for vb in VALUE_BITS:
            d = r[f"dense_v{vb}"]
            cells += [f"{d:,}"] + [f"{r[f'csr_i{ib}_v{vb}']:,} ({r[f'csr_i{ib}_v{vb}'] / d:.1%})" for ib in INDEX_BITS]
        lines.append(f"| {100 * r['sparsity']:g} % | " + " | ".join(cells) +
                     f" | {r['fillers_i4']:,} / {r['fillers_i8']:,} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1", help="comma-separated torch thread counts to time with; 'default' "
                    "is torch's own count (meaningful only on an idle machine)")
    ap.add_argument("--min-run-time", type=float, default=0.2,
                    help="seconds blocked_autorange measures each case for, at least")
    ap.add_argument("--rounds", type=int, default=3, help="sweeps over all cases; each time is the median of theirs")
    ap.add_argument("--out", default="runs/bench/sparse.json", type=Path)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    mach = machine()  # before anything changes the thread count
    threads = list(dict.fromkeys(torch.get_num_threads() if t == "default" else int(t)
                                 for t in args.threads.split(",")))
    surveyed = survey(threads[0], min(args.min_run_time, 0.1))
    rows = [r for n in threads for r in time_layers(n, args.min_run_time, args.rounds)]
    even = break_even(rows)
    sizes = storage()
    md = markdown(surveyed, rows, even, sizes, args, mach)
    print(md)
    save_json(args.out, {"machine": mach, "threads": threads, "min_run_time": args.min_run_time, "rounds": args.rounds,
                         "survey": surveyed, "rows": rows, "break_even": even, "storage": sizes})
    if args.write_docs:
        write_section("bench_sparse", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
