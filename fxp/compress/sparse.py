"""Deep Compression's sparse weight storage: compressed sparse rows with narrow relative column indices.

Han, Mao and Dally, "Deep Compression" (ICLR 2016), section 2 and figure 2: a pruned layer is stored
row by row, and instead of each nonzero's column it stores the gap to the previous stored entry of
its row, in a fixed number of bits (``index_bits``; the paper uses 8 for conv and 5 for fully connected
layers). A gap too wide for those bits is bridged by *filler* entries: an explicit zero placed the
widest expressible gap further on, repeated until the remaining gap fits.

The code of an entry is ``gap - 1``, where ``gap = col - prev_col`` and ``prev_col`` is the column of
the previous entry of the same row, or -1 for a row's first entry. Every gap is at least 1 (two
entries never share a column), so storing ``gap - 1`` lets ``index_bits`` bits reach gaps 1 to
``2**index_bits``. With 3 bits that is the paper's figure 2: a filler zero where the gap would
exceed 8. For the row ``[0, 3.4, 0, 0, 0.9, 0 ×10, 1.7]`` (16 columns) the entries are 3.4 (gap 2),
0.9 (gap 3), a filler at column 12 (gap 8) and 1.7 (gap 3): codes ``[1, 2, 7, 2]``.

Zeros after a row's last nonzero cost nothing; an empty row has no entries, only its row pointer.
Arrays of more than two dimensions (conv weights, (out, in, k, k)) are stored as the matrix
(shape[0], rest) that a conv lowered to a matrix product multiplies by, and decode to their shape.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np

from fxp.errors import FxpError
from fxp.resources import read_npz, write_atomic

MAX_INDEX_BITS = 16  # codes are held in uint16; Deep Compression's widths (5, 8) are far below
_MEMBERS = ("values", "gaps", "row_ptr", "shape", "index_bits")


@dataclass(frozen=True, eq=False)
class SparseMatrix:
    """A weight array in compressed sparse rows with relative ``index_bits``-bit column indices.

    Members (build one with :meth:`encode`; construction checks they are consistent):

    ``shape``
        The dense array's shape, two or more dimensions; the stored matrix has ``shape[0]`` rows and
        ``prod(shape[1:])`` columns.
    ``values``
        1-D, one per entry in row order: the nonzero weights and the filler zeros, in the dense
        array's dtype (float32 weights, int8 integer weights, ...).
    ``gaps``
        1-D unsigned codes, one per entry: ``gap - 1`` (module docstring), each below
        ``2**index_bits``; uint8 for ``index_bits`` up to 8, else uint16.
    ``row_ptr``
        int64, ``rows + 1`` of them: row ``r``'s entries are ``values[row_ptr[r]:row_ptr[r + 1]]``.
    ``index_bits``
        The width of a gap code, 1 to 16.

    The arrays are not copied; do not write to them.
    """

    shape: tuple[int, ...]
    values: np.ndarray
    gaps: np.ndarray
    row_ptr: np.ndarray
    index_bits: int

    def __post_init__(self) -> None:
        problem = _problem(self.shape, self.values, self.gaps, self.row_ptr, self.index_bits)
        if problem:
            raise FxpError(f"inconsistent SparseMatrix: {problem}; "
                           "build it with SparseMatrix.encode(dense, index_bits)")

    # --- building and reading back ---------------------------------------------------------------
    @classmethod
    def encode(cls, dense: np.ndarray, index_bits: int) -> SparseMatrix:
        """Store ``dense`` (2-D, or more dimensions read as (shape[0], rest)) with ``index_bits``-bit gaps.

        An entry is kept where ``dense != 0``; a negative zero decodes as a positive one.
        """
        _check_index_bits(index_bits)
        dense = np.asarray(dense)
        if dense.ndim < 2:
            raise FxpError(f"SparseMatrix.encode needs an array of 2 or more dimensions, got shape {dense.shape}; "
                           "give a vector as a (1, n) matrix")
        if dense.dtype.kind not in "biuf":
            raise FxpError(f"SparseMatrix.encode stores numbers, got dtype {dense.dtype}; "
                           "convert the weights to a float or integer dtype")
        rows, cols = dense.shape[0], math.prod(dense.shape[1:])
        matrix = dense.reshape(rows, cols)
        nz_row, nz_col = np.nonzero(matrix)  # row-major: by row, then column
        nz_row, nz_col = nz_row.astype(np.int64), nz_col.astype(np.int64)
        nz_ptr = np.zeros(rows + 1, np.int64)  # where each row's nonzeros start among the nonzeros
        np.cumsum(np.bincount(nz_row, minlength=rows), out=nz_ptr[1:])
        prev = np.empty_like(nz_col)
        prev[1:] = nz_col[:-1]
        prev[nz_ptr[:-1][nz_ptr[:-1] < nz_ptr[1:]]] = -1  # each nonempty row's first nonzero counts from -1
        gap = nz_col - prev  # >= 1
        widest = 1 << index_bits
        fill = (gap - 1) // widest  # fillers before each nonzero, so that what remains is 1..widest
        last = np.cumsum(fill + 1) - 1  # each nonzero's place among the entries, after its fillers
        entries = int(last[-1]) + 1 if len(last) else 0
        gaps = np.full(entries, widest - 1, np.uint8 if index_bits <= 8 else np.uint16)
        gaps[last] = gap - fill * widest - 1
        values = np.zeros(entries, dense.dtype)
        values[last] = matrix[nz_row, nz_col]
        ends = np.concatenate([[0], last + 1])  # entries through the k-th nonzero
        return cls(tuple(int(n) for n in dense.shape), values, gaps, ends[nz_ptr], int(index_bits))

    def decode(self) -> np.ndarray:
        """The dense array: exactly the encoded one (``np.array_equal``), in its dtype and shape."""
        rows, cols = self.matrix_shape
        reach = np.cumsum(self.gaps.astype(np.int64) + 1)  # running sum of gaps over all rows
        before = np.concatenate([[0], reach])[self.row_ptr[:-1]]  # that sum where each row starts
        row = np.repeat(np.arange(rows), np.diff(self.row_ptr))
        out = np.zeros((rows, cols), self.values.dtype)
        out[row, reach - before[row] - 1] = self.values  # a filler writes its zero on a zero
        return out.reshape(self.shape)

    # --- sizes -----------------------------------------------------------------------------------
    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(rows, columns) of the stored matrix: (shape[0], product of the rest)."""
        return self.shape[0], math.prod(self.shape[1:])

    @property
    def entries(self) -> int:
        """Stored entries: the nonzeros and the filler zeros."""
        return len(self.values)

    @property
    def nnz(self) -> int:
        """Nonzero weights."""
        return int(np.count_nonzero(self.values))

    @property
    def fillers(self) -> int:
        """Filler zeros: entries that only bridge a gap wider than ``index_bits`` can express."""
        return self.entries - self.nnz

    def nbytes(self, value_bits: int) -> int:
        """Exact storage in bytes with ``value_bits`` per value, packed bit to bit.

        ``ceil((entries * (value_bits + index_bits) + (rows + 1) * pointer_bits) / 8)``: each entry,
        fillers included, holds a value and a gap code; a row pointer is an offset 0..entries, so
        :attr:`pointer_bits` wide. The shape and ``index_bits`` are a few header bytes, not counted.
        """
        if isinstance(value_bits, bool) or not isinstance(value_bits, (int, np.integer)) or value_bits < 1:
            raise FxpError(f"value_bits must be a positive integer, got {value_bits!r}; give the bits per weight "
                           "(32 for float32, 8 for int8, or the codebook index width)")
        return -(-(self.entries * (int(value_bits) + self.index_bits) + self.pointer_storage_bits) // 8)

    @property
    def pointer_bits(self) -> int:
        """The width of a row pointer: enough for an offset 0..entries."""
        return max(1, self.entries.bit_length())

    @property
    def pointer_storage_bits(self) -> int:
        """The rows + 1 row pointers, in bits."""
        return (self.matrix_shape[0] + 1) * self.pointer_bits

    # --- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write one .npz file at ``path`` exactly (no suffix added), atomically."""
        buf = io.BytesIO()
        np.savez(buf, values=self.values, gaps=self.gaps, row_ptr=self.row_ptr,
                 shape=np.array(self.shape, np.int64), index_bits=np.array(self.index_bits, np.int64))
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseMatrix:
        """Read a file written by :meth:`save`; a corrupt or foreign one raises FxpError naming it."""
        fix = "it is not a sparse matrix written by SparseMatrix.save; write it again"
        arrays = read_npz(path, _MEMBERS, fix, "SparseMatrix.save")
        shape, bits = arrays["shape"], arrays["index_bits"]
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):
            raise FxpError(f"{path} holds a member that is not a .npy array; {fix}")
        if shape.ndim != 1 or shape.dtype.kind not in "iu" or bits.shape != () or bits.dtype.kind not in "iu":
            raise FxpError(f"{path}: shape or index_bits is not an integer vector and scalar; {fix}")
        problem = _problem(tuple(int(n) for n in shape), arrays["values"], arrays["gaps"], arrays["row_ptr"],
                           int(bits))
        if problem:
            raise FxpError(f"{path}: {problem}; {fix}")
        gaps = arrays["gaps"].astype(np.uint8 if bits <= 8 else np.uint16)
        return cls(tuple(int(n) for n in shape), arrays["values"], gaps, arrays["row_ptr"].astype(np.int64), int(bits))


def _check_index_bits(index_bits) -> None:
    if isinstance(index_bits, bool) or not isinstance(index_bits, (int, np.integer)) \
            or not 1 <= index_bits <= MAX_INDEX_BITS:
        raise FxpError(f"index_bits must be an integer from 1 to {MAX_INDEX_BITS}, got {index_bits!r}; "
                       "pick a width in that range (Deep Compression uses 8 for conv and 5 for fc layers)")


def _problem(shape: tuple, values: np.ndarray, gaps: np.ndarray, row_ptr: np.ndarray, index_bits) -> str | None:
    """What makes these members inconsistent, or None: the checks that make decode safe."""
    if isinstance(index_bits, bool) or not isinstance(index_bits, (int, np.integer)) \
            or not 1 <= index_bits <= MAX_INDEX_BITS:
        return f"index_bits is {index_bits!r}, not an integer from 1 to {MAX_INDEX_BITS}"
    if len(shape) < 2 or any(not isinstance(n, (int, np.integer)) or n < 0 for n in shape):
        return f"shape {shape} is not 2 or more non-negative sizes"
    for name, a in (("values", values), ("gaps", gaps), ("row_ptr", row_ptr)):
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            return f"{name} is not a 1-D numpy array"
    if values.dtype.kind not in "biuf":
        return f"values have dtype {values.dtype}, not a number type"
    if gaps.dtype.kind != "u" or row_ptr.dtype.kind not in "iu":
        return f"gaps have dtype {gaps.dtype} and row_ptr {row_ptr.dtype}; expected unsigned and integer"
    if len(gaps) != len(values):
        return f"{len(gaps)} gap codes for {len(values)} values"
    if len(gaps) and int(gaps.max()) >= 1 << index_bits:
        return f"a gap code {int(gaps.max())} does not fit {index_bits} bits"
    rows, cols = shape[0], math.prod(shape[1:])
    if len(row_ptr) != rows + 1:
        return f"{len(row_ptr)} row pointers for {rows} rows, expected {rows + 1}"
    ptr = row_ptr.astype(np.int64)
    if ptr[0] != 0 or ptr[-1] != len(values) or np.any(np.diff(ptr) < 0):
        return f"row pointers do not rise from 0 to the {len(values)} entries"
    reach = np.concatenate([[0], np.cumsum(gaps.astype(np.int64) + 1)])
    span = reach[ptr[1:]] - reach[ptr[:-1]]  # a row's last entry sits at column span - 1
    if len(span) and int(span.max()) > cols:
        return f"row {int(span.argmax())} reaches column {int(span.max()) - 1}, past its {cols} columns"
    return None
