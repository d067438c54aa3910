"""Lanes and words: how vectors of integers travel on a unit's ports and in the replay files.

A port carries lanes of ``width`` bits side by side, lane ``k`` at bits ``[k·width, (k+1)·width)``
(little-endian), each read as signed (two's complement) or unsigned as the unit's sidecar says.
Packing refuses a value its lane cannot hold instead of keeping its low bits: a unit whose lanes are
too narrow for the values it should produce must fail verification, not pass it on the low bits.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FxpError


def lane_range(width: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest value of a lane."""
    return (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)


def check_lanes(values: np.ndarray, width: int, signed: bool, what: str = "value") -> None:
    """Raise if any of ``values`` does not fit a lane of ``width`` bits (``signed`` or not)."""
    lo, hi = lane_range(width, signed)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = np.argwhere((values < lo) | (values > hi))[0]
        v = int(values[tuple(bad)])
        raise FxpError(f"{what} {v} (vector {bad[0]}, lane {bad[-1]}) does not fit a {width}-bit "
                       f"{'signed' if signed else 'unsigned'} lane ({lo}..{hi}); the unit's lanes are too narrow "
                       "for its layer: regenerate it with fxp gen unit")


def pack_lanes(values: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """Lane values (rows, lanes) → 32-bit words (rows, ceil(lanes·width / 32)) uint32, zero-padded.

    Signed lanes hold two's complement. A value outside the lane's range is refused (:func:`check_lanes`).
    """
    values = np.asarray(values, dtype=np.int64)
    check_lanes(values, width, signed)
    rows, lanes = values.shape
    if width in (8, 16, 32):  # whole bytes: the little-endian integers are the packing
        raw = np.ascontiguousarray(values.astype(f"<u{width // 8}")).view(np.uint8).reshape(rows, -1)
    else:
        bits = np.empty((rows, lanes, width), np.uint8)  # one bit plane at a time: no int64 (rows, lanes, width)
        for b in range(width):
            bits[:, :, b] = (values >> b) & 1
        raw = np.packbits(bits.reshape(rows, lanes * width), axis=1, bitorder="little")
    return pad_words(raw)


def pad_words(raw: np.ndarray) -> np.ndarray:
    """Bytes (rows, k) → uint32 little-endian words (rows, ceil(k / 4)), zero-padded."""
    pad = (-raw.shape[1]) % 4
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    return np.ascontiguousarray(raw).view("<u4")


def words_to_ints(words: np.ndarray) -> list[int]:
    """uint32 word rows → one Python integer per row (the port value)."""
    return [int.from_bytes(r.tobytes(), "little") for r in words]
