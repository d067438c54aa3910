"""Crafted .npz files for the tests that a loader refuses what it did not write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from fxp.errors import FxpError


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def assert_each_refused(load, cases: dict[str, bytes], folder: Path, says: str) -> None:
    """Each case written to a file of its own, ``load`` raises one line naming the file and saying ``says``."""
    for name, data in cases.items():
        path = folder / f"{name.replace(' ', '_')}.npz"
        path.write_bytes(data)
        with pytest.raises(FxpError) as e:
            load(path)
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg and says in msg, (name, msg)
