"""What a layer's weights take to store after each stage of Deep Compression, in exact bytes.

Stages (Han et al. 2016, table 2's columns):

- **dense**: every weight at the run's weight width (``value_bits``: 8 in qat runs with 8-bit weights,
  32 in float runs).
- **pruned**: compressed sparse rows with relative indices (:mod:`fxp.compress.sparse`), values at
  ``value_bits``, at the gap-code width (1 to 8 bits) that gives the fewest bytes.
- **shared**: the same sparse rows with each value replaced by its codebook index (``share_bits``
  bits), plus the codebook (``value_bits`` per centroid: the run's integer weights). In a sparse layer
  code 0 stands for zero (the filler entries need it), so it has ``2**share_bits - 1`` centroids; a
  layer with no zero stores a dense index per weight and uses all ``2**share_bits`` codes. Where codes
  and codebook cost more than the values (sharing an int8 layer with 8-bit codes), the layer stays as
  pruned.
- **huffman**: the sparse rows' codes and gap codes each Huffman-coded (:mod:`fxp.compress.huffman`,
  the code tables charged), plus the row pointers and the codebook; a layer whose code tables would
  cost more than they save keeps its fixed-width codes.

Each part is rounded up to whole bytes once; a row pointer is as wide as the entry count needs (``sparse.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fxp.compress.huffman import HuffmanCode
from fxp.compress.sparse import SparseMatrix

INDEX_BITS = range(1, 9)  # the relative-index widths tried per layer; Deep Compression used 5 (fc) and 8 (conv)


def codes(shared) -> tuple[np.ndarray, bool]:
    """The codebook index of every position as stored (``shared``: :class:`fxp.compress.sharing.SharedWeights`):
    in a sparse layer code 0 is zero and centroid ``j`` is code ``j + 1``; and whether the layer is sparse."""
    sparse = not bool(shared.mask.all())
    idx = shared.index.numpy().astype(np.int64)
    if sparse:
        idx = np.where(shared.mask.numpy(), idx + 1, 0)
    return idx.reshape(idx.shape[0], -1), sparse


def _best_csr(matrix: np.ndarray, value_bits: int) -> SparseMatrix:
    return min((SparseMatrix.encode(matrix, b) for b in INDEX_BITS), key=lambda s: s.nbytes(value_bits))


def _huffman_bytes(symbols: np.ndarray) -> int:
    return HuffmanCode.fit(symbols).nbytes(symbols) if symbols.size else 0


def huffman_rows(coded: np.ndarray, encodings: list[SparseMatrix] | None = None) -> tuple[SparseMatrix, int]:
    """The sparse rows of ``coded`` (of ``encodings``, its encodings at each gap-code width, where given)
    whose Huffman-coded codes and gaps (with the row pointers) take the fewest bytes, and those bytes."""
    def size(m: SparseMatrix) -> int:
        return _huffman_bytes(m.values) + _huffman_bytes(m.gaps) + math.ceil(m.pointer_storage_bits / 8)
    encodings = encodings or [SparseMatrix.encode(coded, b) for b in INDEX_BITS]
    return min(((m, size(m)) for m in encodings), key=lambda x: x[1])


def layer_storage(weight: torch.Tensor, value_bits: int, shared=None, share_bits: int | None = None) -> dict:
    """Bytes of ``weight`` after each stage it has been through (see the module docstring), with the
    sparse format's gap-code width and filler count."""
    w = weight.detach().numpy()
    csr = _best_csr(w.reshape(w.shape[0], -1), value_bits)
    # an accelerator's weight memory holds every weight, zeros too (the engines read them in order): int8
    # values, or (shared) one index a weight and the codebook beside the multipliers
    out = {"value_bits": value_bits, "dense_bytes": math.ceil(w.size * value_bits / 8),
           "memory_bits_values": w.size * value_bits,
           "index_bits": csr.index_bits, "fillers": csr.fillers, "sparse_bytes": csr.nbytes(value_bits)}
    if shared is None:
        return out
    book = math.ceil(shared.k * value_bits / 8)
    coded, sparse = codes(shared)
    if sparse:
        encodings = [SparseMatrix.encode(coded, b) for b in INDEX_BITS]  # once, for both stages
        shared_bytes = min(m.nbytes(share_bits) for m in encodings) + book
        huffman = huffman_rows(coded, encodings)[1]
    else:
        shared_bytes = math.ceil(coded.size * share_bits / 8) + book
        huffman = _huffman_bytes(coded.ravel())
    # codes as wide as the values, plus a codebook, cost more than the values themselves (8-bit sharing of
    # an int8 layer): such a layer stores its values as pruned, which its tied weights allow as well
    out["shared_bytes"] = min(shared_bytes, out["sparse_bytes"])
    # where the code tables cost more than they save (a small layer), the codes stay fixed-width
    out.update(share_bits=share_bits, centroids=shared.k, huffman_bytes=min(huffman + book, out["shared_bytes"]))
    out["memory_bits_shared"] = w.size * share_bits + shared.k * value_bits
    return out
