"""Shared benchmark plumbing: timing, machine description, and writing a section of docs/benchmarks.md."""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"


def median_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``fn`` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, torch {torch.__version__}"


def write_section(name: str, markdown: str) -> None:
    """Replace the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` (append if absent)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(text)


def save_json(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def add_only(ap, names) -> None:
    """``--only NAME,...|none``: a subset of ``names`` to run, or none (table the results recorded earlier)."""
    ap.add_argument("--only", default=None, help="comma-separated subset of " + ", ".join(names) + ", or none "
                    "(run nothing: table the recorded results)")


def only(args, names) -> list[str]:
    """The names ``--only`` picks (all by default); an unknown one stops the bench, naming the known ones."""
    picked = [] if args.only == "none" else args.only.split(",") if args.only else list(names)
    unknown = [n for n in picked if n not in names]
    if unknown:
        raise SystemExit(f"--only {unknown[0]!r} is not one of {', '.join(names)} (or none)")
    return picked
