"""Deep Compression's relative-index sparse rows (fxp.compress.sparse): exact round trips, sizes, files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from npz_files import assert_each_refused, npz

from fxp.compress.sparse import SparseMatrix
from fxp.errors import FxpError


def _paper_row() -> np.ndarray:
    """Figure 2's row of Han et al. 2016: 3.4 at column 1, 0.9 at 4, 1.7 at 15, of 16."""
    row = np.zeros((1, 16), np.float32)
    row[0, [1, 4, 15]] = [3.4, 0.9, 1.7]
    return row


def _columns(m: SparseMatrix, r: int) -> list[int]:
    """Columns of row r's entries, walked from the gap codes (gap = code + 1, first from column -1)."""
    col, out = -1, []
    for code in m.gaps[m.row_ptr[r]:m.row_ptr[r + 1]]:
        col += int(code) + 1
        out.append(col)
    return out


def test_paper_figure_2_filler_at_gap_8():
    m = SparseMatrix.encode(_paper_row(), index_bits=3)
    # gaps 2, 3, then 11 > 8: a filler zero 8 on (column 12), and 3 to column 15
    assert m.gaps.tolist() == [1, 2, 7, 2] and m.gaps.dtype == np.uint8
    assert _columns(m, 0) == [1, 4, 12, 15]
    assert m.values.tolist() == pytest.approx([3.4, 0.9, 0.0, 1.7])
    assert m.row_ptr.tolist() == [0, 4]
    assert (m.entries, m.nnz, m.fillers) == (4, 3, 1)
    assert np.array_equal(m.decode(), _paper_row())


def test_nbytes_exact():
    m = SparseMatrix.encode(_paper_row(), index_bits=3)
    # 4 entries × (32 + 3) bits + 2 row pointers × 3 bits (offsets 0..4) = 146 bits -> 19 bytes
    assert m.pointer_bits == 3 and m.nbytes(32) == 19
    # 4 × (8 + 3) + 6 = 50 bits -> 7 bytes (6.25 rounded up)
    assert m.nbytes(8) == 7
    with pytest.raises(FxpError, match="value_bits"):
        m.nbytes(0)


def test_gap_several_times_the_widest():
    # index_bits 2: gaps of 1..4. Column 13 from -1 is a gap of 14 = 4 + 4 + 4 + 2: three fillers
    a = np.zeros((2, 20), np.float32)
    a[0, 13] = 5.0
    a[1, 0], a[1, 19] = 1.0, 2.0  # 1 then a gap of 19 = 4 × 4 + 3: four fillers
    m = SparseMatrix.encode(a, index_bits=2)
    assert _columns(m, 0) == [3, 7, 11, 13]
    assert m.gaps[: m.row_ptr[1]].tolist() == [3, 3, 3, 1]
    assert _columns(m, 1) == [0, 4, 8, 12, 16, 19]
    assert m.fillers == 7 and m.nnz == 3
    assert np.array_equal(m.decode(), a)


def test_gap_exactly_the_widest_needs_no_filler():
    a = np.zeros((1, 16), np.float32)
    a[0, 7] = a[0, 15] = 1.0  # gaps 8 and 8 with 3 bits
    m = SparseMatrix.encode(a, index_bits=3)
    assert m.gaps.tolist() == [7, 7] and m.fillers == 0


def test_empty_rows_all_zero_and_dense_rows():
    a = np.zeros((5, 40), np.float32)
    a[1] = np.arange(1, 41)  # fully dense: every gap 1, code 0
    a[3, 39] = -2.0
    m = SparseMatrix.encode(a, index_bits=4)
    assert m.row_ptr.tolist() == [0, 0, 40, 40, 43, 43]  # row 3: two fillers (16, 32) then 39
    assert m.gaps[:40].tolist() == [0] * 40
    assert np.array_equal(m.decode(), a)
    z = SparseMatrix.encode(np.zeros((3, 7), np.float32), index_bits=4)
    assert z.entries == 0 and z.row_ptr.tolist() == [0, 0, 0, 0]
    assert np.array_equal(z.decode(), np.zeros((3, 7), np.float32)) and z.nbytes(32) == 1  # 4 one-bit pointers


@pytest.mark.parametrize("index_bits", [1, 16])
def test_extreme_index_widths(index_bits):
    rng = np.random.default_rng(index_bits)
    a = rng.standard_normal((6, 50)).astype(np.float32)
    a[rng.random(a.shape) < 0.9] = 0
    m = SparseMatrix.encode(a, index_bits)
    assert m.gaps.dtype == (np.uint8 if index_bits <= 8 else np.uint16)
    assert int(m.gaps.max(initial=0)) < 1 << index_bits
    assert np.array_equal(m.decode(), a)
    if index_bits == 1:  # gaps of 1 or 2: every other zero column in a run is a filler
        assert m.fillers > 0
    else:
        assert m.fillers == 0


def test_conv_weights_and_int8():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (8, 3, 5, 5), dtype=np.int8)
    w[rng.random(w.shape) < 0.8] = 0
    m = SparseMatrix.encode(w, index_bits=5)
    assert m.shape == (8, 3, 5, 5) and m.matrix_shape == (8, 75) and m.values.dtype == np.int8
    back = m.decode()
    assert back.dtype == np.int8 and np.array_equal(back, w)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_round_trip(seed, sparsity):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 300)))
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) < sparsity] = 0
    for bits in (1, 3, 5, 8):
        m = SparseMatrix.encode(a, bits)
        assert m.nnz == np.count_nonzero(a)
        assert np.array_equal(m.decode(), a)
        # a filler per full widest gap in each run of zeros before a nonzero
        widest = 1 << bits
        fillers = 0
        for row in a:
            cols = np.flatnonzero(row)
            fillers += int(((np.diff(np.concatenate([[-1], cols])) - 1) // widest).sum())
        assert m.fillers == fillers


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    for dtype, bits in ((np.float32, 5), (np.int8, 8), (np.float64, 12)):
        w = (rng.standard_normal((4, 2, 3, 3)) * 50).astype(dtype)
        w[rng.random(w.shape) < 0.7] = 0
        m = SparseMatrix.encode(w, bits)
        path = tmp_path / f"w_{np.dtype(dtype).name}.sparse"
        m.save(path)
        assert path.is_file()  # at the path given, no .npz added
        back = SparseMatrix.load(path)
        assert back.shape == m.shape and back.index_bits == bits
        for name in ("values", "gaps", "row_ptr"):
            assert getattr(back, name).dtype == getattr(m, name).dtype
            assert np.array_equal(getattr(back, name), getattr(m, name))
        assert np.array_equal(back.decode(), w) and back.decode().dtype == w.dtype


def test_load_refuses_corrupt_and_foreign_files(tmp_path):
    m = SparseMatrix.encode(_paper_row(), index_bits=3)
    good = tmp_path / "good.npz"
    m.save(good)
    members = {"values": m.values, "gaps": m.gaps, "row_ptr": m.row_ptr, "shape": np.array(m.shape),
               "index_bits": np.array(3)}
    cases = {
        "truncated": good.read_bytes()[:-40],
        "text": b"not an archive\n",
        "code too wide": npz(**{**members, "gaps": np.array([1, 2, 8, 2], np.uint8)}),
        "foreign": npz(weights=np.ones(3)),
        "pointer past end": npz(**{**members, "row_ptr": np.array([0, 5])}),
        "past last column": npz(**{**members, "shape": np.array([1, 15])}),
        "falling pointers": npz(**{**members, "row_ptr": np.array([0, 5, 4]), "shape": np.array([2, 16])}),
        "object values": npz(**{**members, "values": np.array([1, "a", None, 2], object)}),
    }
    assert_each_refused(SparseMatrix.load, cases, tmp_path, "SparseMatrix.save")
    assert zipfile.is_zipfile(good)  # the good file itself loads
    assert np.array_equal(SparseMatrix.load(good).decode(), _paper_row())


@pytest.mark.parametrize("bits", [0, 17, -1, True, 3.0])
def test_index_bits_out_of_range(bits):
    with pytest.raises(FxpError, match="index_bits must be an integer from 1 to 16"):
        SparseMatrix.encode(_paper_row(), bits)


def test_refuses_vectors_and_non_numbers():
    with pytest.raises(FxpError, match="2 or more dimensions"):
        SparseMatrix.encode(np.ones(5), 4)
    with pytest.raises(FxpError, match="dtype"):
        SparseMatrix.encode(np.array([["a", "b"]]), 4)


def test_construction_checks_members():
    with pytest.raises(FxpError, match="does not fit 3 bits"):
        SparseMatrix((1, 16), np.ones(1, np.float32), np.array([8], np.uint8), np.array([0, 1]), 3)
