"""fxp's number core beside APyTypes, fxpmath and bare torch, in one process.

Tasks: quantize float32 → s16.8 (nearest even, saturate); multiply two s16.8 arrays and requantize
to s16.8; exact int8 matmul 256x256x256 with 32-bit accumulation. Each peer's result is checked
against fxp's (0 mismatches expected where the modes agree) so the timings compare like with like.

    python bench/bench_fxp.py [--n 10000000] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_time, save_json, write_section  # noqa: E402

import fxp  # noqa: E402

S16_8 = fxp.Format(16, 8)


def bench_quantize(n: int, n_slow: int, repeats: int) -> list[dict]:
    import apytypes as apy
    from fxpmath import Fxp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * 10
    xn = x.numpy()
    ours = fxp.quantize(x, S16_8)
    ref = np.asarray(
        apy.APyFixedArray.from_float(xn, int_bits=9, frac_bits=40)
        .cast(int_bits=8, frac_bits=8, quantization=apy.QuantizationMode.TIES_EVEN, overflow=apy.OverflowMode.SAT)
        .to_bits(),
        dtype=np.uint64,
    )
    fx_slow = Fxp(xn[:n_slow], signed=True, n_word=16, n_frac=8, rounding="around", overflow="saturate")
    mism = {
        "APyTypes": int((ours.to_bits().astype(np.uint64) != ref).sum()),
        "fxpmath": int((ours.raw[:n_slow].numpy() != fx_slow.val).sum()),
    }

    def apy_modes():
        apy.APyFixedArray.from_float(xn, int_bits=9, frac_bits=40).cast(
            int_bits=8, frac_bits=8, quantization=apy.QuantizationMode.TIES_EVEN, overflow=apy.OverflowMode.SAT
        )

    rows = [
        ("fxp quantize (nearest_even, saturate, overflow count)", n, lambda: fxp.quantize(x, S16_8), None),
        ("bare torch round+clamp→int16 (no modes, no checks)", n,
         lambda: torch.round(x * 256).clamp_(-32768, 32767).to(torch.int16), None),
        ("APyTypes 0.5.1 from_float+cast (TIES_EVEN, SAT)", n, apy_modes, mism["APyTypes"]),
        ("APyTypes 0.5.1 from_float only (ties away, wrap)", n,
         lambda: apy.APyFixedArray.from_float(xn, int_bits=8, frac_bits=8), None),
        ("fxpmath 0.4.10 Fxp(around, saturate)", n_slow,
         lambda: Fxp(xn[:n_slow], signed=True, n_word=16, n_frac=8, rounding="around", overflow="saturate"),
         mism["fxpmath"]),
    ]
    return [_row("quantize 1e7 float32 → s16.8", *r, repeats) for r in rows]


def bench_mul(n: int, n_slow: int, repeats: int) -> list[dict]:
    import apytypes as apy
    from fxpmath import Fxp

    g = torch.Generator().manual_seed(1)
    a, b = fxp.quantize(torch.randn(n, generator=g) * 4, S16_8), fxp.quantize(torch.randn(n, generator=g) * 4, S16_8)
    # from_float of exactly representable values: APyTypes' constructor reads numpy bit patterns unsigned
    A = apy.APyFixedArray.from_float(a.to_float().numpy(), int_bits=8, frac_bits=8)
    B = apy.APyFixedArray.from_float(b.to_float().numpy(), int_bits=8, frac_bits=8)
    a32, b32 = a.raw.to(torch.int32), b.raw.to(torch.int32)
    fa = Fxp(a.to_float()[:n_slow].numpy(), signed=True, n_word=16, n_frac=8)
    fb = Fxp(b.to_float()[:n_slow].numpy(), signed=True, n_word=16, n_frac=8)

    def apy_run():
        return (A * B).cast(int_bits=8, frac_bits=8, quantization=apy.QuantizationMode.TIES_EVEN, overflow=apy.OverflowMode.SAT)

    def fxpmath_run():
        return Fxp(fa * fb, signed=True, n_word=16, n_frac=8, rounding="around", overflow="saturate")

    ours = (a * b).requantize(S16_8)
    mism_apy = int((ours.to_bits().astype(np.uint64) != np.asarray(apy_run().to_bits(), dtype=np.uint64)).sum())
    mism_fxm = int((ours.raw[:n_slow].numpy() != fxpmath_run().val).sum())
    rows = [
        ("fxp (a*b).requantize(s16.8) (nearest_even, saturate)", n, lambda: (a * b).requantize(S16_8), None),
        ("bare torch int32 (a*b+128)>>8, clamp (ties up, no checks)", n,
         lambda: ((a32 * b32 + 128) >> 8).clamp_(-32768, 32767).to(torch.int16), None),
        ("APyTypes 0.5.1 (A*B).cast(TIES_EVEN, SAT)", n, apy_run, mism_apy),
        ("fxpmath 0.4.10 Fxp(a*b, around, saturate)", n_slow, fxpmath_run, mism_fxm),
    ]
    return [_row("multiply s16.8 × s16.8, requantize to s16.8", *r, repeats) for r in rows]


def bench_matmul(repeats: int) -> list[dict]:
    import apytypes as apy
    from fxpmath import Fxp

    g = torch.Generator().manual_seed(2)
    ra = torch.randint(-128, 128, (256, 256), generator=g, dtype=torch.int8)
    rb = torch.randint(-128, 128, (256, 256), generator=g, dtype=torch.int8)
    a, b = fxp.FxTensor(ra, "s8.0"), fxp.FxTensor(rb, "s8.0")
    A = apy.APyFixedArray.from_float(ra.numpy().astype(np.float64), int_bits=8, frac_bits=0)
    B = apy.APyFixedArray.from_float(rb.numpy().astype(np.float64), int_bits=8, frac_bits=0)
    Fa = Fxp(ra.numpy().astype(np.int64), signed=True, n_word=8, n_frac=0)
    Fb = Fxp(rb.numpy().astype(np.int64), signed=True, n_word=8, n_frac=0)
    exact = ra.long() @ rb.long()
    ours = (a @ b).raw.long()
    mism = {
        "fxp": int((ours != exact).sum()),
        "APyTypes": int((torch.from_numpy(np.asarray((A @ B).to_bits(), dtype=np.int64)) != (ours & (2**24 - 1))).sum()),
        "fxpmath": int((torch.from_numpy(np.matmul(Fa, Fb).val) != exact).sum()),
    }
    fa, fb = ra.float(), rb.float()
    ops = 2 * 256**3
    rows = [
        ("fxp FxTensor @ (exact, s24.0 result)", ops, lambda: a @ b, mism["fxp"]),
        ("torch._int_mm (bare int8 kernel)", ops, lambda: torch._int_mm(ra, rb), None),
        ("torch float32 matmul", ops, lambda: fa @ fb, None),
        ("APyTypes 0.5.1 A @ B", ops, lambda: A @ B, mism["APyTypes"]),
        ("fxpmath 0.4.10 np.matmul", ops, lambda: np.matmul(Fa, Fb), mism["fxpmath"]),
    ]
    return [_row("exact int8 matmul 256×256×256", *r, repeats, unit="GOPS") for r in rows]


def _row(task, name, n, fn, mismatches, repeats, unit="values/s"):
    t = median_time(fn, repeats)
    rate = n / t
    return {"task": task, "impl": name, "n": n, "seconds": t, "rate": rate / 1e9 if unit == "GOPS" else rate,
            "unit": unit, "mismatches_vs_fxp": mismatches}


TARGETS = [  # (task prefix, peer prefix, minimum ratio fxp / peer)
    ("quantize", "APyTypes 0.5.1 from_float only", 10),
    ("quantize", "fxpmath", 500),
    ("quantize", "bare torch", 0.5),
    ("multiply", "APyTypes", 5),
    ("exact int8", "APyTypes", 10),
]


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for task_p, peer_p, target in TARGETS:
        task = [r for r in rows if r["task"].startswith(task_p)]
        ours = next(r for r in task if r["impl"].startswith("fxp"))
        peer = next(r for r in task if r["impl"].startswith(peer_p))
        ratio = ours["rate"] / peer["rate"]
        out.append({"task": ours["task"], "peer": peer["impl"], "ratio": ratio, "target": target, "met": ratio >= target})
    return out


def markdown(rows: list[dict], rat: list[dict], command: str) -> str:
    lines = [f"Command: `{command}`  ", f"Machine: {machine()}", "",
             "| task | implementation | elements | rate | mismatches vs fxp |", "|---|---|---:|---:|---:|"]
    for r in rows:
        rate = f"{r['rate']:.1f} GOPS" if r["unit"] == "GOPS" else f"{r['rate']:.3g} /s"
        mm = "—" if r["mismatches_vs_fxp"] is None else str(r["mismatches_vs_fxp"])
        n = "256³" if r["unit"] == "GOPS" else f"{r['n']:.0e}"
        lines.append(f"| {r['task']} | {r['impl']} | {n} | {rate} | {mm} |")
    lines += ["", "| task | fxp ÷ peer | ratio | target | met |", "|---|---|---:|---:|---|"]
    for r in rat:
        lines.append(f"| {r['task']} | {r['peer']} | {r['ratio']:.1f}× | ≥ {r['target']}× | {'yes' if r['met'] else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="elements for the elementwise tasks")
    ap.add_argument("--n-slow", type=int, default=1_000_000, help="elements for fxpmath (about 1e6/s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="runs/bench/bench_fxp.json")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    rows = bench_quantize(args.n, args.n_slow, args.repeats) + bench_mul(args.n, args.n_slow, args.repeats)
    rows += bench_matmul(args.repeats)
    rat = ratios(rows)
    command = "python bench/bench_fxp.py" + (f" --n {args.n}" if args.n != 10_000_000 else "") + " --write-docs"
    md = markdown(rows, rat, command)
    print(md)
    save_json(args.json, {"machine": machine(), "rows": rows, "ratios": rat})
    if args.write_docs:
        write_section("bench_fxp", md)
    bad = [r for r in rows if r["mismatches_vs_fxp"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
