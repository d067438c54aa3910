"""Canonical Huffman coding (fxp.compress.huffman): lossless round trips, code properties, exact sizes, files."""

from __future__ import annotations

import itertools
import math
import zipfile
from fractions import Fraction

import numpy as np
import pytest
from npz_files import assert_each_refused, npy, npz

from fxp.compress.huffman import MAX_CODE_LENGTH, HuffmanCode, HuffmanStream
from fxp.errors import FxpError


def _bits(code: HuffmanCode) -> dict[int, str]:
    """Each symbol's word as a string of 0s and 1s."""
    return {s: format(w, f"0{code.lengths[s]}b") for s, w in code.codes.items()}


def _check_code(code: HuffmanCode) -> None:
    """Prefix-free, Kraft sum exactly 1 (1/2 for one symbol), canonical."""
    words = _bits(code)
    kraft = sum(Fraction(1, 2 ** len(w)) for w in words.values())
    assert kraft == (1 if len(words) > 1 else Fraction(1, 2) if words else 0)
    ordered = sorted(words.values())  # a word that prefixes another prefixes its successor in this order
    assert not any(b.startswith(a) for a, b in itertools.pairwise(ordered))
    canonical = sorted(words, key=lambda s: (code.lengths[s], s))
    word, prev = 0, None
    for s in canonical:  # canonical words count up, shifted left where the length grows
        length = code.lengths[s]
        if prev is not None:
            word = (word + 1) << (length - prev)
        assert code.codes[s] == word
        prev = length


def _round_trip(symbols: np.ndarray) -> HuffmanCode:
    code = HuffmanCode.fit(symbols)
    data, n_bits = code.encode(symbols)
    assert len(data) == math.ceil(n_bits / 8) and n_bits == code.payload_bits(symbols)
    back = code.decode(data, symbols.size)
    assert back.dtype == np.int64 and np.array_equal(back, symbols.ravel())
    _check_code(code)
    return code


def test_hand_computed_example():
    # counts {0: 5, 1: 2, 2: 1, 3: 1}; the heap pops the lowest (count, key):
    #   (1, sym 2) + (1, sym 3) -> node A (2, key 4)    symbols before merged nodes at equal counts
    #   (2, sym 1) + (2, A)     -> node B (4, key 5)
    #   (4, B)     + (5, sym 0) -> root
    # depths: 0 -> 1, 1 -> 2, 2 and 3 -> 3. Canonical words: 0 "0", 1 "10", 2 "110", 3 "111"
    symbols = np.array([0, 1, 0, 2, 0, 3, 1, 0, 0])
    code = HuffmanCode.fit(symbols)
    assert code.lengths == {0: 1, 1: 2, 2: 3, 3: 3}
    assert _bits(code) == {0: "0", 1: "10", 2: "110", 3: "111"}
    assert code.payload_bits(symbols) == 5 * 1 + 2 * 2 + 3 + 3 == 15
    # table: 5 + 5 bits of header, 3 lengths x (w + 1 = 3) bits of counts, 4 symbols x (w = 2) bits
    assert code.table_bits() == 10 + 9 + 8 == 27
    assert code.nbytes(symbols) == math.ceil((15 + 27) / 8) == 6
    # 0 10 110 111 -> 01011011 1(0000000)
    assert code.encode(np.array([0, 1, 2, 3])) == (bytes([0b01011011, 0b10000000]), 9)
    assert HuffmanCode.from_counts({0: 5, 1: 2, 2: 1, 3: 1}).lengths == code.lengths


def test_equal_counts_break_ties_by_symbol():
    # (1, 0) + (1, 1) merge first (lowest keys); the merged (2, key 3) then joins (1, 2)
    code = HuffmanCode.fit(np.array([2, 1, 0]))
    assert code.lengths == {0: 2, 1: 2, 2: 1}
    assert _bits(code) == {2: "0", 0: "10", 1: "11"}


@pytest.mark.parametrize("alphabet", [2, 3, 17, 100, 256])
def test_uniform_round_trip(alphabet):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        symbols = rng.integers(0, alphabet, 3000)
        code = _round_trip(symbols)
        # Huffman is optimal among prefix codes, so never worse than the fixed-width code
        assert code.payload_bits(symbols) <= symbols.size * math.ceil(math.log2(len(code.lengths)))
        _round_trip(symbols.reshape(3, 1000).astype(np.uint16))  # any shape and integer dtype, read flat


def _entropy_bits(symbols: np.ndarray) -> float:
    p = np.unique(symbols, return_counts=True)[1] / symbols.size
    return float(-(p * np.log2(p)).sum()) * symbols.size


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
def test_skewed_round_trip_within_entropy_plus_one_bit(p):
    rng = np.random.default_rng(11)
    symbols = rng.geometric(p, 50_000) - 1
    code = _round_trip(symbols)
    payload, h = code.payload_bits(symbols), _entropy_bits(symbols)
    assert h <= payload < h + symbols.size  # Huffman: H <= mean length < H + 1
    assert payload < symbols.size * max(1, math.ceil(math.log2(symbols.max() + 1)))  # beats a fixed width


def test_million_symbols_round_trip():
    # gap codes of a 90 %-sparse layer and 5-bit indices, at a size decode has to take in stride
    rng = np.random.default_rng(2)
    symbols = np.minimum(rng.geometric(0.1, 1_000_000) - 1, 31)
    stream = HuffmanStream.encode(symbols)
    assert np.array_equal(stream.decode(), symbols)


def test_one_distinct_symbol_gets_one_bit():
    symbols = np.full(13, 7)
    code = _round_trip(symbols)
    assert code.lengths == {7: 1} and code.codes == {7: 0}
    assert code.encode(symbols) == (bytes(2), 13)
    assert code.table_bits() == 5 + 5 + 1 * 4 + 3  # width 3 for symbol 7
    with pytest.raises(FxpError, match="no word of this code"):
        code.decode(b"\x80", 1)  # a 1 bit: the one-symbol code has no such word


def test_empty_input():
    empty = np.zeros(0, np.int64)
    code = HuffmanCode.fit(empty)
    assert code.lengths == {} and code.max_length == 0
    assert code.encode(empty) == (b"", 0)
    assert code.decode(b"", 0).shape == (0,)
    assert code.payload_bits(empty) == code.table_bits() == code.nbytes(empty) == 0
    with pytest.raises(FxpError, match="empty Huffman code"):
        code.decode(b"\x00", 1)
    with pytest.raises(FxpError, match="no word"):
        code.encode(np.array([1]))


def test_fibonacci_counts_are_limited_to_32_bits():
    # Fibonacci counts make Huffman's tree a path: 44 levels for 45 symbols, past the 32-bit limit
    fib = [1, 1]
    while len(fib) < 45:
        fib.append(fib[-1] + fib[-2])
    plain = HuffmanCode.from_counts(dict(enumerate(fib[:30])))
    assert sorted(plain.lengths.values()) == sorted([*range(1, 30), 29])  # under the limit: untouched
    code = HuffmanCode.from_counts(dict(enumerate(fib)))
    assert code.max_length == MAX_CODE_LENGTH
    _check_code(code)
    lengths = [code.lengths[s] for s in range(45)]
    assert all(a >= b for a, b in itertools.pairwise(lengths))  # more frequent, never longer
    symbols = np.repeat(np.arange(45), 3)
    data, _ = code.encode(symbols)
    assert np.array_equal(code.decode(data, symbols.size), symbols)  # the long words, past the fast table


def test_deterministic_bytes():
    rng = np.random.default_rng(5)
    symbols = rng.integers(0, 40, 5000) * rng.integers(0, 2, 5000)
    a, b = HuffmanCode.fit(symbols), HuffmanCode.fit(rng.permutation(symbols))
    assert a.lengths == b.lengths and a.codes == b.codes
    assert a.encode(symbols) == b.encode(symbols) == HuffmanCode.fit(symbols.copy()).encode(symbols)


def test_truncated_bit_stream_raises_fxp_error():
    rng = np.random.default_rng(8)
    symbols = rng.integers(0, 50, 400)
    code = HuffmanCode.fit(symbols)
    data, _ = code.encode(symbols)
    for cut in (data[: len(data) // 2], data[:-1], data[:3], b""):
        with pytest.raises(FxpError, match="truncated"):
            code.decode(cut, symbols.size)
    assert np.array_equal(code.decode(data + b"\xff", symbols.size), symbols)  # only what is needed is read


def test_bad_symbols_and_codes_refused():
    with pytest.raises(FxpError, match="integer symbols"):
        HuffmanCode.fit(np.array([0.5, 1.0]))
    with pytest.raises(FxpError, match="from 0 to 2\\*\\*32 - 1"):
        HuffmanCode.fit(np.array([-1, 2]))
    with pytest.raises(FxpError, match="complete prefix code"):
        HuffmanCode({0: 1, 1: 2})
    with pytest.raises(FxpError, match="1-bit word"):
        HuffmanCode({3: 2})
    with pytest.raises(FxpError, match="length"):
        HuffmanCode({0: 0, 1: 1})
    with pytest.raises(FxpError, match="count"):
        HuffmanCode.from_counts({0: -1})
    code = HuffmanCode.fit(np.array([0, 1, 1]))
    with pytest.raises(FxpError, match="symbol 5 has no word"):
        code.payload_bits(np.array([0, 5]))
    with pytest.raises(FxpError, match="n_symbols"):
        code.decode(b"\x00", -1)


def test_stream_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    for name, symbols in (("skewed", rng.geometric(0.2, 3000) - 1), ("one", np.full(9, 3)),
                          ("empty", np.zeros(0, np.int64)), ("wide", rng.integers(0, 2**20, 500))):
        stream = HuffmanStream.encode(symbols)
        assert stream.nbytes == math.ceil((stream.n_bits + stream.code.table_bits()) / 8)
        assert stream.nbytes == stream.code.nbytes(symbols)
        path = tmp_path / f"{name}.huff"
        stream.save(path)
        assert path.is_file()  # at the path given, no .npz added
        back = HuffmanStream.load(path)
        assert back.code.lengths == stream.code.lengths and back.data == stream.data
        assert (back.n_bits, back.n_symbols) == (stream.n_bits, stream.n_symbols)
        assert np.array_equal(back.decode(), symbols)
        again = tmp_path / f"{name}.again"
        back.save(again)
        assert again.read_bytes() == path.read_bytes()


def test_load_refuses_corrupt_truncated_and_foreign_files(tmp_path):
    symbols = np.array([0, 1, 0, 2, 0, 3, 1, 0, 0] * 5)
    stream = HuffmanStream.encode(symbols)
    good = tmp_path / "good.npz"
    stream.save(good)
    raw = good.read_bytes()
    members = {"data": np.frombuffer(stream.data, np.uint8), "n_bits": np.array(stream.n_bits),
               "n_symbols": np.array(stream.n_symbols), "symbols": np.array([0, 1, 2, 3]),
               "lengths": np.array([1, 2, 3, 3], np.uint8)}
    flipped = bytearray(raw)
    flipped[raw.index(stream.data[:4]) + 1] ^= 0xFF  # inside the data member: the zip's CRC catches it
    cases = {
        "truncated file": raw[:-40],
        "flipped byte": bytes(flipped),
        "text": b"not an archive\n",
        "foreign": npz(weights=np.ones(3)),
        "single array": npy(np.ones(3)),
        "not a code": npz(**{**members, "lengths": np.array([1, 1, 3, 3], np.uint8)}),
        "too few bits": npz(**{**members, "n_bits": np.array(stream.n_bits - 8)}),
        "bits not used": npz(**{**members, "n_bits": np.array(stream.n_bits + 1)}),
        "stream cut": npz(**{**members, "data": members["data"][:3], "n_bits": np.array(24)}),
        "more symbols": npz(**{**members, "n_symbols": np.array(stream.n_symbols + 3)}),
        "falling symbols": npz(**{**members, "symbols": np.array([0, 2, 1, 3])}),
        "float lengths": npz(**{**members, "lengths": np.array([1.0, 2, 3, 3])}),
        "object data": npz(**{**members, "data": np.array([1, "a", None], object)}),
    }
    assert_each_refused(HuffmanStream.load, cases, tmp_path, "is not a Huffman stream written by fxp")
    with pytest.raises(FxpError, match="cannot be opened"):
        HuffmanStream.load(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(good) and np.array_equal(HuffmanStream.load(good).decode(), symbols)


def test_stream_construction_checks_members():
    code = HuffmanCode.fit(np.array([0, 1, 1]))
    with pytest.raises(FxpError, match="bytes of data"):
        HuffmanStream(code, b"\x00\x00", 3, 3)
    with pytest.raises(FxpError, match="padding bits"):
        HuffmanStream(code, b"\x01", 3, 3)
