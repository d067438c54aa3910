"""The compressed weights file (``weights.fxpz``): what the storage figures of ``fxp compress`` count, on disk.

One ``.npz`` archive with, for each linear and conv2d layer, members named ``<layer>/<part>``:

- a shared layer (:mod:`fxp.compress.sharing`): its codebook (float32) and its codes as compressed
  sparse rows (:mod:`fxp.compress.sparse`; code 0 is zero, centroid ``j`` is code ``j + 1``) whose codes
  and gap codes are Huffman streams (:mod:`fxp.compress.huffman`), with the row pointers; a layer
  without zeros keeps its codes as one Huffman stream;
- a layer that was not shared: its float values as compressed sparse rows (the byte figures of the report
  count them at the run's weight width).

:func:`load_packed` rebuilds every layer's weight exactly (the codebook values are the weights the model
holds), refusing a damaged or foreign file in one line.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from fxp.compress.huffman import HuffmanCode, HuffmanStream
from fxp.compress.sparse import SparseMatrix
from fxp.errors import FxpError
from fxp.resources import write_atomic

FIX = "it is not a weights file written by fxp compress; compress the run again"


def _stream_arrays(prefix: str, s: HuffmanStream) -> dict[str, np.ndarray]:
    return {f"{prefix}.data": np.frombuffer(s.data, np.uint8), f"{prefix}.n_bits": np.array(s.n_bits, np.int64),
            f"{prefix}.n_symbols": np.array(s.n_symbols, np.int64),
            f"{prefix}.symbols": np.array(list(s.code.lengths), np.int64),
            f"{prefix}.lengths": np.array(list(s.code.lengths.values()), np.int64)}


def _stream(z: dict, prefix: str) -> np.ndarray:
    code = HuffmanCode(dict(zip(z[f"{prefix}.symbols"].tolist(), z[f"{prefix}.lengths"].tolist(), strict=True)))
    return HuffmanStream(code, z[f"{prefix}.data"].tobytes(), int(z[f"{prefix}.n_bits"]),
                         int(z[f"{prefix}.n_symbols"])).decode()


def _top(codes: torch.Tensor) -> int:
    return int(codes.max()) if codes.numel() else 0


def save_packed(path: str | os.PathLike, weights: dict[str, torch.Tensor], shared: dict) -> None:
    """Write ``weights`` (layer → weight tensor), the layers in ``shared`` by their codebooks."""
    from fxp.compress.storage import codes, huffman_rows

    arrays: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        arrays[f"{name}/shape"] = np.array(w.shape, np.int64)
        if name in shared:
            coded, sparse = codes(shared[name])
            arrays[f"{name}/codebook"] = shared[name].codebook.detach().float().numpy()
            if sparse:
                m = huffman_rows(coded)[0]
                arrays.update(_stream_arrays(f"{name}/codes", HuffmanStream.encode(m.values)))
                arrays.update(_stream_arrays(f"{name}/gaps", HuffmanStream.encode(m.gaps)))
                arrays[f"{name}/row_ptr"] = m.row_ptr
                arrays[f"{name}/index_bits"] = np.array(m.index_bits, np.int64)
            else:
                arrays.update(_stream_arrays(f"{name}/codes", HuffmanStream.encode(coded.ravel())))
        else:
            m = SparseMatrix.encode(w.detach().float().numpy().reshape(w.shape[0], -1), 8)
            arrays.update({f"{name}/values": m.values, f"{name}/gaps": m.gaps, f"{name}/row_ptr": m.row_ptr,
                           f"{name}/index_bits": np.array(m.index_bits, np.int64)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def load_packed(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every layer's weight from a file :func:`save_packed` wrote."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as e:
        raise FxpError(f"{path} cannot be read ({type(e).__name__}); {FIX}") from None
    out = {}
    try:
        for name in sorted({k.split("/")[0] for k in arrays}):
            shape = tuple(int(n) for n in arrays[f"{name}/shape"])
            if f"{name}/codebook" not in arrays:
                m = SparseMatrix(shape, arrays[f"{name}/values"], arrays[f"{name}/gaps"],
                                 arrays[f"{name}/row_ptr"], int(arrays[f"{name}/index_bits"]))
                out[name] = torch.from_numpy(m.decode().copy())
                continue
            book = torch.from_numpy(arrays[f"{name}/codebook"].copy())
            symbols = _stream(arrays, f"{name}/codes")
            if f"{name}/row_ptr" in arrays:
                bits = int(arrays[f"{name}/index_bits"])
                gaps = _stream(arrays, f"{name}/gaps").astype(np.uint8 if bits <= 8 else np.uint16)
                m = SparseMatrix(shape, symbols, gaps, arrays[f"{name}/row_ptr"], bits)
                coded = torch.from_numpy(m.decode().astype(np.int64))
                if _top(coded) > book.numel():
                    raise FxpError(f"a code of {name} is past its {book.numel()} centroids")
                weight = torch.where(coded > 0, book[(coded - 1).clamp(min=0)], torch.zeros(()))
            else:
                coded = torch.from_numpy(symbols)
                if coded.numel() != int(np.prod(shape)) or _top(coded) >= book.numel():
                    raise FxpError(f"the codes of {name} do not fit its shape or its {book.numel()} centroids")
                weight = book[coded]
            out[name] = weight.reshape(shape)
    except FxpError as e:
        raise FxpError(f"{path}: {str(e).split(';')[0]}; {FIX}") from None
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise FxpError(f"{path}: {type(e).__name__} ({e}); {FIX}") from None
    return out
