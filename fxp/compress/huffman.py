"""Canonical Huffman coding of non-negative integer symbols: Deep Compression's last stage.

Han, Mao and Dally, "Deep Compression" (ICLR 2016), section 3: once a layer is pruned and its weights
share a codebook, it is stored as two streams of small integers, the codebook index of every stored
weight and the relative-index gap code of every entry (``sparse.py``). Neither is uniform (the paper's
figure 5: the weight indices gather around two peaks, the gaps are rarely above 20), so a Huffman
code, a prefix code with short words for frequent symbols, stores them in fewer bits than a fixed
width: 20 to 30 % less storage in the paper.

The code is deterministic, so that the same symbols always give the same bytes:

- **lengths**: Huffman's algorithm on a heap of (count, key). A symbol's key is its value; a merged
  node's key is above every symbol, rising in the order the nodes are made, so of equal counts the
  symbols merge before merged nodes (the variant that keeps the longest word short). A lone symbol
  gets a 1-bit code. Words longer than ``MAX_CODE_LENGTH`` (32 bits: a 33-bit word takes at least
  14.9 million symbols, with Fibonacci counts) are shortened with JPEG's adjustment (ITU T.81, annex
  K.3), which keeps the code complete and still gives the shortest words to the most frequent symbols.
- **words**: canonical, assigned in order of (length, symbol) by counting up, so the lengths alone
  define the code and the words of each length are consecutive numbers.
- **bits**: each word written from its most significant bit, packed most significant bit first into
  bytes, and the last byte padded with zero bits.

What storing the code costs (:meth:`HuffmanCode.table_bits`) is charged for this format, JPEG's canonical
table (ITU T.81, B.2.4.2: the count of words of each length, then the symbols) with fields sized to the
alphabet: 5 bits for the longest length L - 1, 5 bits for the symbol width w - 1
(``w = max(1, max_symbol.bit_length())``, at most 32), then for each length 1..L the number of words
of that length in w + 1 bits (up to 2**w of them), then the symbols in canonical order in w bits each.
An empty code costs nothing. The number of symbols in a stream is not charged: the layer's shape or
the sparse row pointers already give it.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fxp.errors import FxpError
from fxp.resources import read_npz, write_atomic

MAX_CODE_LENGTH = 32  # a word fits the 32-bit refill of the decoder and the 5-bit length field
MAX_SYMBOL_BITS = 32  # symbols below 2**32: the 5-bit width field; gap codes and indices are far below
LENGTH_FIELD_BITS = 5  # the longest length - 1, in the table
WIDTH_FIELD_BITS = 5  # the symbol width - 1, in the table
# The decoder looks up up to this many bits at once in a table of 2**FAST_BITS entries; longer words
# (rare symbols, by construction) are found length by length.
FAST_BITS = 16
_MEMBERS = ("data", "n_bits", "n_symbols", "symbols", "lengths")
_FIX_CODE = "build the code with HuffmanCode.fit(symbols)"


def _symbols(symbols, what: str) -> np.ndarray:
    """``symbols`` as a flat int64 array, refused unless they are integers from 0 to 2**32 - 1."""
    a = np.asarray(symbols)
    if a.dtype.kind not in "iu":
        raise FxpError(f"{what} takes integer symbols, got dtype {a.dtype}; "
                       "pass codebook indices or gap codes as an integer array")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << MAX_SYMBOL_BITS):
        raise FxpError(f"{what} takes symbols from 0 to 2**{MAX_SYMBOL_BITS} - 1, got {int(a.min())} to "
                       f"{int(a.max())}; map the values to non-negative indices first")
    return a.reshape(-1).astype(np.int64, copy=False)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _huffman_lengths(symbols: list[int], counts: list[int]) -> list[int]:
    """Huffman's word lengths for ``symbols`` (distinct, two or more) with these positive counts."""
    n = len(symbols)
    heap = [(c, s, i) for i, (s, c) in enumerate(zip(symbols, counts))]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)  # nodes 0..n-1 are the symbols, n..2n-2 the merges, 2n-2 the root
    key = max(symbols) + 1
    node = n
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (c1 + c2, key, node))
        key += 1
        node += 1
    depth = [0] * (2 * n - 1)
    for i in range(2 * n - 3, -1, -1):  # a parent is made after its children, so is set before them
        depth[i] = depth[parent[i]] + 1
    return depth[:n]


def _limit_lengths(symbols: list[int], lengths: list[int], limit: int) -> list[int]:
    """``lengths`` (a complete code) with none above ``limit``: JPEG's annex K.3 adjustment.

    The deepest level holds an even number of words; two of them leave it (one moves up a level, as the
    prefix they shared) and the other takes the place of a word split from the deepest level above
    them that has one. Both moves keep the Kraft sum at 1. The new lengths go, shortest first, to the
    symbols in order of their old lengths: the frequent symbols keep the short words.
    """
    deepest = max(lengths)
    if deepest <= limit:
        return lengths
    per_length = [0] * (deepest + 1)
    for length in lengths:
        per_length[length] += 1
    for i in range(deepest, limit, -1):
        while per_length[i] > 0:
            j = i - 2
            while per_length[j] == 0:
                j -= 1
            per_length[i] -= 2
            per_length[i - 1] += 1
            per_length[j + 1] += 2
            per_length[j] -= 1
    order = sorted(range(len(symbols)), key=lambda k: (lengths[k], symbols[k]))
    new = [length for length in range(1, limit + 1) for _ in range(per_length[length])]
    out = [0] * len(symbols)
    for k, length in zip(order, new):
        out[k] = length
    return out


@dataclass(frozen=True)
class _Tables:
    """What encoding and decoding look up, derived once from the lengths."""

    symbols: np.ndarray  # int64, increasing
    lens: np.ndarray  # int64, each symbol's word length
    words: np.ndarray  # uint64, each symbol's canonical word
    canon: np.ndarray  # int64: the symbols in canonical order, (length, symbol)
    first: list[int]  # per length: the first word of that length
    count: list[int]  # per length: how many words have it
    offset: list[int]  # per length: the canonical index of its first word
    fast_len: list[int]  # per FAST_BITS-bit window: the length of the word it starts with, 0 if longer
    fast_sym: list[int]  # per window: that word's canonical index


@dataclass(frozen=True, eq=False)
class HuffmanCode:
    """A canonical Huffman code: a word length for each symbol it codes (module docstring).

    ``lengths`` maps each symbol (0 to 2**32 - 1) to its word length (1 to 32); they must be those of a
    complete prefix code (Kraft sum exactly 1), or a single symbol with a 1-bit word. Build one with
    :meth:`fit`; the words follow from the lengths (:attr:`codes`). The dict is not copied again after
    construction; do not write to it.
    """

    lengths: Mapping[int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.lengths, Mapping):
            raise FxpError(f"HuffmanCode takes a mapping symbol -> length, got {type(self.lengths).__name__}; "
                           f"{_FIX_CODE}")
        items = sorted(self.lengths.items())
        for s, length in items:
            if not _is_int(s) or not 0 <= s < 1 << MAX_SYMBOL_BITS:
                raise FxpError(f"HuffmanCode symbol {s!r} is not an integer from 0 to 2**{MAX_SYMBOL_BITS} - 1; "
                               f"{_FIX_CODE}")
            if not _is_int(length) or not 1 <= length <= MAX_CODE_LENGTH:
                raise FxpError(f"HuffmanCode length {length!r} of symbol {s} is not an integer from 1 to "
                               f"{MAX_CODE_LENGTH}; {_FIX_CODE}")
        object.__setattr__(self, "lengths", {int(s): int(length) for s, length in items})
        if len(items) == 1 and items[0][1] != 1:
            raise FxpError(f"a HuffmanCode of one symbol gives it a 1-bit word, got {items[0][1]} bits; {_FIX_CODE}")
        kraft = sum(1 << (MAX_CODE_LENGTH - length) for _, length in items)
        if len(items) > 1 and kraft != 1 << MAX_CODE_LENGTH:
            raise FxpError(f"HuffmanCode lengths {self._short()} are not those of a complete prefix code (Kraft sum "
                           f"{kraft / (1 << MAX_CODE_LENGTH):.6g}, not 1); {_FIX_CODE}")

    def _short(self) -> str:
        text = str(self.lengths)
        return text if len(text) <= 80 else text[:77] + "...}"

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, symbols: np.ndarray) -> HuffmanCode:
        """The Huffman code of ``symbols`` (integers, any shape), from how often each occurs."""
        s = _symbols(symbols, "HuffmanCode.fit")
        values, counts = np.unique(s, return_counts=True)
        return cls.from_counts(dict(zip(values.tolist(), counts.tolist())))

    @classmethod
    def from_counts(cls, counts: Mapping[int, int]) -> HuffmanCode:
        """The Huffman code for these symbol counts; symbols counted 0 get no word."""
        items = sorted(counts.items())
        for s, c in items:
            if not _is_int(c) or c < 0:
                raise FxpError(f"HuffmanCode.from_counts: count {c!r} of symbol {s!r} is not a non-negative "
                               "integer; pass how many times each symbol occurs")
        items = [(int(s), int(c)) for s, c in items if c > 0]
        if len(items) <= 1:
            return cls({s: 1 for s, _ in items})
        symbols = [s for s, _ in items]
        lengths = _huffman_lengths(symbols, [c for _, c in items])
        return cls(dict(zip(symbols, _limit_lengths(symbols, lengths, MAX_CODE_LENGTH))))

    # --- the words --------------------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        """The longest word, in bits (0 for an empty code)."""
        return max(self.lengths.values(), default=0)

    @property
    def codes(self) -> dict[int, int]:
        """Each symbol's canonical word, as an integer of ``lengths[symbol]`` bits."""
        t = self._tables
        return dict(zip(t.symbols.tolist(), t.words.tolist()))

    @cached_property
    def _tables(self) -> _Tables:
        symbols = np.array(list(self.lengths), np.int64)
        lens = np.array(list(self.lengths.values()), np.int64)
        order = np.lexsort((symbols, lens))  # canonical: by length, then symbol
        words = np.zeros(len(symbols), np.uint64)
        first = [0] * (MAX_CODE_LENGTH + 2)
        count = [0] * (MAX_CODE_LENGTH + 2)
        offset = [0] * (MAX_CODE_LENGTH + 2)
        word, prev = 0, 0
        for k, i in enumerate(order.tolist()):
            length = int(lens[i])
            word <<= length - prev
            if count[length] == 0:
                first[length], offset[length] = word, k
            count[length] += 1
            words[i] = word
            word, prev = word + 1, length
        fast = min(self.max_length, FAST_BITS)
        canon_lens = lens[order]
        short = canon_lens <= fast
        # canonical words are in lexicographic order, so the windows that start with each short word
        # form consecutive runs from window 0, in canonical order
        fast_len = np.zeros(1 << fast, np.int64)
        fast_sym = np.zeros(1 << fast, np.int64)
        runs = np.left_shift(1, fast - canon_lens[short])
        filled = int(runs.sum())
        fast_len[:filled] = np.repeat(canon_lens[short], runs)
        fast_sym[:filled] = np.repeat(np.flatnonzero(short), runs)
        return _Tables(symbols, lens, words, symbols[order], first, count, offset,
                       fast_len.tolist(), fast_sym.tolist())

    def _index(self, symbols, what: str) -> np.ndarray:
        """Each symbol's place in ``_tables.symbols``; a symbol the code lacks raises FxpError."""
        s = _symbols(symbols, what)
        t = self._tables
        if not len(t.symbols):
            idx, missing = np.zeros(len(s), np.int64), np.ones(len(s), bool)
        else:
            idx = np.minimum(np.searchsorted(t.symbols, s), len(t.symbols) - 1)
            missing = t.symbols[idx] != s
        if np.any(missing):
            raise FxpError(f"{what}: symbol {int(s[np.argmax(missing)])} has no word in this Huffman code; "
                           "fit the code on all the symbols it is to encode")
        return idx

    # --- sizes ------------------------------------------------------------------------------------
    def payload_bits(self, symbols: np.ndarray) -> int:
        """Bits of the encoded ``symbols``: the sum of their word lengths (no padding)."""
        return int(self._tables.lens[self._index(symbols, "HuffmanCode.payload_bits")].sum())

    def table_bits(self) -> int:
        """Bits to store the code itself, in the canonical table format of the module docstring.

        ``5 + 5 + L * (w + 1) + n * w`` for ``n`` symbols of width ``w`` and longest word ``L``; 0 when empty.
        """
        if not self.lengths:
            return 0
        width = max(1, max(self.lengths).bit_length())
        return LENGTH_FIELD_BITS + WIDTH_FIELD_BITS + self.max_length * (width + 1) + len(self.lengths) * width

    def nbytes(self, symbols: np.ndarray) -> int:
        """Exact bytes of ``symbols`` encoded with this code, the code's table included, rounded up once."""
        return -(-(self.payload_bits(symbols) + self.table_bits()) // 8)

    # --- coding -----------------------------------------------------------------------------------
    def encode(self, symbols: np.ndarray) -> tuple[bytes, int]:
        """``symbols`` (any shape, read flat) as packed bytes and the number of bits used (module docstring)."""
        t = self._tables
        idx = self._index(symbols, "HuffmanCode.encode")
        lens, words = t.lens[idx], t.words[idx]
        ends = np.cumsum(lens)
        n_bits = int(ends[-1]) if len(ends) else 0
        starts = ends - lens
        bits = np.zeros(n_bits, np.uint8)
        for k in range(self.max_length):  # bit k of every word at least k + 1 bits long
            sel = np.flatnonzero(lens > k)
            shift = (lens[sel] - 1 - k).astype(np.uint64)
            bits[starts[sel] + k] = (words[sel] >> shift) & np.uint64(1)
        return np.packbits(bits).tobytes(), n_bits

    def decode(self, data: bytes, n_symbols: int) -> np.ndarray:
        """The first ``n_symbols`` symbols coded in ``data`` (int64, 1-D); a truncated or foreign stream raises."""
        return self._decode(data, n_symbols)[0]

    def _decode(self, data: bytes, n_symbols: int) -> tuple[np.ndarray, int]:
        """The symbols and the bits they took."""
        if not _is_int(n_symbols) or n_symbols < 0:
            raise FxpError(f"n_symbols must be a non-negative integer, got {n_symbols!r}; "
                           "pass the count of symbols that were encoded")
        n = int(n_symbols)
        data = bytes(data)
        if n == 0:
            return np.zeros(0, np.int64), 0
        if not self.lengths:
            raise FxpError(f"an empty Huffman code cannot decode {n} symbols; decode with the code the symbols "
                           "were encoded with")
        if n > 8 * len(data):  # every word takes at least one bit
            raise FxpError(f"a Huffman bit stream of {len(data)} bytes cannot hold {n} symbols: it is truncated; "
                           "pass the whole stream that encode() returned")
        t = self._tables
        longest = self.max_length
        fast = min(longest, FAST_BITS)
        fast_mask, long_mask = (1 << fast) - 1, (1 << longest) - 1
        fast_len, fast_sym = t.fast_len, t.fast_sym
        keep = [(1 << k) - 1 for k in range(33)]
        # 32-bit big-endian words, and one zero word past the end: a stream that ends in the middle of
        # a refill is read through zeros; one that needs more than that is truncated
        words = np.frombuffer(data + bytes(-len(data) % 4 + 4), ">u4").tolist()
        out = [0] * n
        buf = nbuf = w = 0  # the low nbuf bits of buf are the next bits of the stream
        for i in range(n):
            if nbuf < longest:
                if w == len(words):
                    raise FxpError(f"the Huffman bit stream of {len(data)} bytes ends after {i} of {n} symbols: it "
                                   "is truncated; pass the whole stream that encode() returned")
                buf = ((buf & keep[nbuf]) << 32) | words[w]
                w += 1
                nbuf += 32
            v = (buf >> (nbuf - fast)) & fast_mask
            length = fast_len[v]
            if length:
                out[i] = fast_sym[v]
            else:
                length, out[i] = self._slow(t, (buf >> (nbuf - longest)) & long_mask, fast, longest, i)
            nbuf -= length
        used = 32 * w - nbuf
        if used > 8 * len(data):
            raise FxpError(f"the Huffman bit stream of {len(data)} bytes ({8 * len(data)} bits) ends before its "
                           f"{n} symbols ({used} bits): it is truncated; pass the whole stream that encode() "
                           "returned")
        return t.canon[np.array(out, np.int64)], used

    @staticmethod
    def _slow(t: _Tables, window: int, fast: int, longest: int, i: int) -> tuple[int, int]:
        """The word longer than ``fast`` bits that ``window`` (``longest`` bits) starts with."""
        for length in range(fast + 1, longest + 1):
            word = window >> (longest - length)
            if 0 <= word - t.first[length] < t.count[length]:
                return length, t.offset[length] + word - t.first[length]
        raise FxpError(f"symbol {i} of the Huffman bit stream is no word of this code; decode with the code "
                       "the symbols were encoded with")


@dataclass(frozen=True, eq=False)
class HuffmanStream:
    """Symbols encoded with a Huffman code: the code, the packed bits and their counts.

    Build one with :meth:`encode`; construction checks the members fit together (``data`` holds
    exactly ``ceil(n_bits / 8)`` bytes, padding bits zero). :meth:`save` and :meth:`load` keep it in
    one .npz file; :meth:`load` decodes the stream to check it.
    """

    code: HuffmanCode
    data: bytes
    n_bits: int
    n_symbols: int

    def __post_init__(self) -> None:
        problem = _stream_problem(self.code, self.data, self.n_bits, self.n_symbols)
        if problem:
            raise FxpError(f"inconsistent HuffmanStream: {problem}; build it with HuffmanStream.encode(symbols)")

    @classmethod
    def encode(cls, symbols: np.ndarray, code: HuffmanCode | None = None) -> HuffmanStream:
        """``symbols`` (any shape, read flat) coded with ``code``, by default the Huffman code fit on them."""
        code = HuffmanCode.fit(symbols) if code is None else code
        data, n_bits = code.encode(symbols)
        return cls(code, data, n_bits, int(np.size(symbols)))

    def decode(self) -> np.ndarray:
        """The symbols, int64, 1-D."""
        return self.code.decode(self.data, self.n_symbols)

    @property
    def nbytes(self) -> int:
        """Exact bytes: the payload bits and the code's table (:meth:`HuffmanCode.table_bits`), rounded up once."""
        return -(-(self.n_bits + self.code.table_bits()) // 8)

    # --- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write one .npz file at ``path`` exactly (no suffix added), atomically."""
        buf = io.BytesIO()
        np.savez(buf, data=np.frombuffer(self.data, np.uint8), n_bits=np.array(self.n_bits, np.int64),
                 n_symbols=np.array(self.n_symbols, np.int64),
                 symbols=np.array(list(self.code.lengths), np.int64),
                 lengths=np.array(list(self.code.lengths.values()), np.uint8))
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> HuffmanStream:
        """Read a file written by :meth:`save`; a corrupt, truncated or foreign one raises FxpError naming it."""
        fix = "it is not a Huffman stream written by fxp (HuffmanStream.save); write it again"
        a = read_npz(path, _MEMBERS, fix, "HuffmanStream.save")
        shapes = {"data": 1, "n_bits": 0, "n_symbols": 0, "symbols": 1, "lengths": 1}
        for name, ndim in shapes.items():
            if a[name].ndim != ndim or a[name].dtype.kind not in "iu":
                raise FxpError(f"{path}: {name} is not an integer {'vector' if ndim else 'scalar'}; {fix}")
        symbols, lengths = a["symbols"], a["lengths"]
        if a["data"].dtype != np.uint8 or len(symbols) != len(lengths) or np.any(np.diff(symbols) <= 0):
            raise FxpError(f"{path}: data is not bytes, or the symbols do not rise one per length; {fix}")
        try:
            code = HuffmanCode(dict(zip(symbols.tolist(), lengths.tolist())))
            stream = cls(code, a["data"].tobytes(), int(a["n_bits"]), int(a["n_symbols"]))
            if stream.n_symbols > stream.n_bits:
                raise FxpError(f"{stream.n_symbols} symbols cannot fit {stream.n_bits} bits")
            used = code._decode(stream.data, stream.n_symbols)[1]
        except FxpError as e:
            raise FxpError(f"{path}: {str(e).split(';')[0]}; {fix}") from None
        if used != stream.n_bits:
            raise FxpError(f"{path}: its {stream.n_symbols} symbols take {used} bits, not the {stream.n_bits} "
                           f"recorded; {fix}")
        return stream


def _stream_problem(code, data, n_bits, n_symbols) -> str | None:
    """What makes these HuffmanStream members inconsistent, or None."""
    if not isinstance(code, HuffmanCode):
        return f"code is a {type(code).__name__}, not a HuffmanCode"
    if not isinstance(data, bytes):
        return f"data is a {type(data).__name__}, not bytes"
    if not _is_int(n_bits) or not _is_int(n_symbols) or n_bits < 0 or n_symbols < 0:
        return f"n_bits {n_bits!r} and n_symbols {n_symbols!r} are not non-negative integers"
    if len(data) != -(-n_bits // 8):
        return f"{len(data)} bytes of data for {n_bits} bits, expected {-(-n_bits // 8)}"
    if n_bits % 8 and data[-1] & ((1 << (8 - n_bits % 8)) - 1):
        return "the padding bits after the last word are not zero"
    if n_symbols and not code.lengths:
        return f"{n_symbols} symbols with an empty code"
    return None
