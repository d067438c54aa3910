"""The compiled XNOR-popcount kernel (``xnor_popcount.c``): built on first use, then loaded with ctypes.

The golden model stays numpy-only (``fxp.bits.xnor_popcount``); this is its fast twin for large
binary products, checked equal to it on every element in the tests. The shared library is compiled
with the system C compiler (``$CC``, else ``cc``) and ``-march=native`` into
``$XDG_CACHE_HOME/fxp`` (default ``~/.cache/fxp``), keyed by the source, the flags and the CPU's
feature flags, so a home directory shared by different machines never loads code built for another CPU.
That folder is private (mode 0700, checked before loading), since fxp loads code from it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from fxp.resources import check_private, private_dir

SOURCE = Path(__file__).with_name("xnor_popcount.c")
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]


def _cpu_flags() -> str:
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return ""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fxp"


def library_path(cc: str) -> Path:
    """Where the kernel built by ``cc`` with :data:`FLAGS` for this CPU is kept."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *FLAGS, _cpu_flags()]).encode()).hexdigest()[:16]
    return cache_dir() / f"xnor_popcount-{key}.so"


@lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise FxpError(f"no C compiler {cc!r} for the native XNOR-popcount kernel; install one "
                       "(apt-get install gcc) or set CC, or use fxp.bits.xnor_popcount")
    lib = library_path(cc)
    private_dir(lib.parent)  # a predictable name in a folder others can write to would load their code
    if lib.exists():
        check_private(lib)
    else:
        # compile beside the target, then rename: concurrent first uses never load a half-written file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
        os.close(fd)
        r = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True)
        if r.returncode:
            os.unlink(tmp)
            raise FxpError(f"compiling {SOURCE.name} failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
        os.chmod(tmp, 0o700)  # the linker's mode follows the umask; a group-writable file would be refused next time
        os.replace(tmp, lib)
    so = ctypes.CDLL(str(lib))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    so.xnor_popcount.argtypes = [ptr, ptr, i64, i64, i64, i64, ptr]
    so.xnor_popcount.restype = None
    return so


def xnor_popcount(x_words: np.ndarray, w_words: np.ndarray, k: int) -> np.ndarray:
    """popcount(XNOR(x, w)) over the first k bits for every (row of x, row of w): (N, M) int64.

    Same contract as :func:`fxp.bits.xnor_popcount`: uint64 words from :func:`fxp.bits.pack_bits`,
    padding bits 0 in both operands.
    """
    x = np.ascontiguousarray(x_words, dtype=np.uint64)
    w = np.ascontiguousarray(w_words, dtype=np.uint64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise FxpError(f"operands must be (N, words) and (M, words) uint64 arrays, got {x.shape} and {w.shape}")
    if not 0 <= k <= 64 * x.shape[1]:
        raise FxpError(f"k={k} bits do not fit {x.shape[1]} words")
    out = np.empty((x.shape[0], w.shape[0]), np.int64)
    _library().xnor_popcount(x.ctypes.data, w.ctypes.data, x.shape[0], w.shape[0], x.shape[1], k, out.ctypes.data)
    return out
