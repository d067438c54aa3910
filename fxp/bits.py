"""Bit-packed XNOR-popcount kernels (numpy only): the arithmetic of ``binary_dense``.

Bits are packed LSB first: bit ``k`` of a row at word ``k // 64``, bit ``k % 64``; 1 means +1.
"""

from __future__ import annotations

import numpy as np


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 array (N, K) → uint64 words (N, ceil(K/64)), bit k at word k // 64, bit k % 64 (LSB first)."""
    packed = np.packbits(bits.astype(np.uint8, copy=False), axis=1, bitorder="little")
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view("<u8")


def xnor_popcount(x_words: np.ndarray, w_words: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """popcount(XNOR(x, w)) over the first k bits for every (row of x, row of w): (N, M) int64.

    Word by word: XOR a word of every x row with the same word of every w row (one broadcast XOR
    into a reused buffer), popcount, and add. Counts of three words (at most 192) add in uint8,
    then into a uint16 total; blocks of ``block`` rows keep every buffer in cache. Padding bits are
    0 in both operands, so they never count as disagreeing.
    """
    words = x_words.shape[1]
    xt, wt = np.ascontiguousarray(x_words.T), np.ascontiguousarray(w_words.T)
    m, n = len(x_words), len(w_words)
    out = np.empty((m, n), dtype=np.int64)
    xor = np.empty((block, n), np.uint64)
    cnt, part = np.empty((block, n), np.uint8), np.empty((block, n), np.uint8)
    total = np.empty((block, n), np.uint16)
    for i in range(0, m, block):
        b = min(block, m - i)
        xo, c, p, tot = xor[:b], cnt[:b], part[:b], total[:b]
        for w0 in range(0, words, 3):
            for w in range(w0, min(words, w0 + 3)):
                np.bitwise_xor(xt[w, i : i + b, None], wt[w][None, :], out=xo)
                if w == w0:  # the group's first count starts the uint8 partial sum
                    np.bitwise_count(xo, out=p)
                else:
                    np.bitwise_count(xo, out=c)
                    np.add(p, c, out=p)
            if w0 == 0:
                np.copyto(tot, p, casting="unsafe")
            else:
                np.add(tot, p, out=tot, casting="unsafe")
        # agreeing bits among the first k: k minus the XOR count (padding bits XOR to 0)
        np.subtract(k, tot, out=out[i : i + b], casting="unsafe")
    return out
