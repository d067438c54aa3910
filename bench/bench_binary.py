"""Binary matrix product (bit-packed XNOR-popcount) against float32 matmul of the same shape, one core.

    python bench/bench_binary.py [--m 1024 --k 1024 --n 256] [--write-docs]

Every implementation computes the same ±1 product (checked: 0 mismatches); the binary ones read 1 bit
per weight and activation, float32 reads 32. Two binary kernels: the golden model's (numpy only) and
its compiled twin ``sim.native`` (C, built on first use with -march=native).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_time, save_json, write_section  # noqa: E402

from fxp.bits import pack_bits, xnor_popcount  # noqa: E402
from sim import native  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--json", default="runs/bench/bench_binary.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    m, k, n = args.m, args.k, args.n
    rng = np.random.default_rng(0)
    a_bits, b_bits = rng.integers(0, 2, (m, k)), rng.integers(0, 2, (n, k))
    a_words, b_words = pack_bits(a_bits), pack_bits(b_bits)
    a_t = torch.from_numpy(a_bits.astype(np.float32) * 2 - 1)
    b_t = torch.from_numpy((b_bits.astype(np.float32) * 2 - 1).T.copy())
    a_np, b_np = a_t.numpy(), b_t.numpy()
    with threadpool_limits(1):
        ref = (a_t @ b_t).round().long().numpy()
        mism = int((2 * xnor_popcount(a_words, b_words, k) - k != ref).sum())
        mism += int((2 * native.xnor_popcount(a_words, b_words, k) - k != ref).sum())
        t_nat = median_time(lambda: native.xnor_popcount(a_words, b_words, k), args.repeats)
        t_bin = median_time(lambda: xnor_popcount(a_words, b_words, k), args.repeats)
        t_torch = median_time(lambda: a_t @ b_t, args.repeats)
        t_numpy = median_time(lambda: a_np @ b_np, args.repeats)
    ops = 2 * m * k * n
    rows = [
        {"impl": "fxp native XNOR-popcount (C, AVX-512 VPOPCNTDQ where present)", "ms": 1e3 * t_nat},
        {"impl": "fxp golden XNOR-popcount (numpy, bit-packed uint64)", "ms": 1e3 * t_bin},
        {"impl": "torch float32 matmul (MKL)", "ms": 1e3 * t_torch},
        {"impl": "numpy float32 matmul (OpenBLAS)", "ms": 1e3 * t_numpy},
    ]
    for r in rows:
        r["gops"] = ops / (r["ms"] / 1e3) / 1e9
        r["speedup_of_binary"] = r["ms"] / rows[0]["ms"]
    mem_bits = (a_words.nbytes + b_words.nbytes) * 8
    mem_f32 = (a_t.numel() + b_t.numel()) * 32
    lines = ["Command: `python bench/bench_binary.py --write-docs`  ", f"Machine: {machine()}, one core", "",
             f"±1 product {m}×{k} by {k}×{n}; mismatches of both binary kernels vs float32: {mism}. Operand memory: "
             f"{mem_bits // 8 // 1024} KiB bit-packed vs {mem_f32 // 8 // 1024} KiB float32 ({mem_f32 / mem_bits:.0f}× less).", "",
             "| implementation | ms | G(binary)OPS | native binary is faster by |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['ms']:.2f} | {r['gops']:.0f} | {r['speedup_of_binary']:.2f}× |")
    speedup = rows[2]["ms"] / rows[0]["ms"]
    lines += ["", f"Target ≥ 2× torch float32 matmul on one core: native {speedup:.1f}× — "
              f"{'met' if speedup >= 2 else 'NOT met'}; the numpy-only golden kernel alone: "
              f"{rows[2]['ms'] / rows[1]['ms']:.2f}×."]
    md = "\n".join(lines)
    print(md)
    save_json(args.json, {"machine": machine(), "rows": rows, "mismatches": mism})
    if args.write_docs:
        write_section("bench_binary", md)
    return 1 if mism else 0


if __name__ == "__main__":
    sys.exit(main())
