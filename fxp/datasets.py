"""Datasets: the embedded default (scikit-learn's 8x8 digits) and MNIST-format IDX folders.

``load("digits")`` needs nothing but scikit-learn. ``load("fashion-mnist")`` reads Debian's
``dataset-fashion-mnist`` package from its install path. Any other argument is a folder holding
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each raw or ``.gz``), as MNIST, Fashion-MNIST and KMNIST ship.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fxp.errors import FxpError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_LEVELS, IDX_LEVELS = 16, 255  # the largest raw pixel value of each kind of data


def normalize(raw: np.ndarray, levels: int) -> np.ndarray:
    """Raw integer pixels 0..``levels`` as the float32 values in [0, 1] every model sees: ``raw / levels``
    in float32 (one rounding). The integer model's input quantizer starts from exactly these values, so
    a table indexed by the raw pixel reproduces it in hardware."""
    return np.asarray(raw).astype(np.float32) / np.float32(levels)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Images as float32 in [0, 1], shape (N, channels, height, width); labels int64.

    Pixels are normalized exactly so: digits' 0..16 divided by 16, IDX bytes 0..255 divided by 255
    (float32), which the integer model's input quantizer then reads. ``name`` is for people (a
    folder's name); ``source`` is what :func:`load` takes to load it again from anywhere: ``digits``,
    ``fashion-mnist``, or the folder's absolute path.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = ""
    levels: int = IDX_LEVELS  # the largest raw pixel value: the pixels were raw / levels (see normalize)

    def raw(self, x: torch.Tensor) -> np.ndarray:
        """The raw integer pixels (0..levels) of normalized images ``x``: what a sensor or a file holds,
        and what an accelerator takes (``normalize`` of them gives ``x`` back exactly)."""
        return np.rint(x.numpy().astype(np.float64) * self.levels).astype(np.int64)

    @property
    def input_shape(self) -> list[int]:
        return list(self.x_train.shape[1:])

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def digits(seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """8x8 digits as float32 pixels in [0, 1] (64 features) and int64 labels: x_train, y_train, x_test, y_test.

    The split is a seeded permutation, so the same seed gives the same split on every machine.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(normalize(d.data, DIGITS_LEVELS))
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a numpy array, checking its header against its size."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise FxpError(f"cannot read IDX file {path} ({e}); re-download or reinstall the dataset") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise FxpError(f"{path} is not an IDX file (bad magic number); give MNIST-format files")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64) if len(raw) >= 4 + 4 * ndim else None
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    if dims is None or len(raw) != 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize:
        raise FxpError(f"{path} is truncated or corrupt (size does not match its header); re-download or reinstall it")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(tuple(dims))


def _find(folder: Path, stem: str, hint: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FxpError(f"{folder / stem}[.gz] is missing; {hint}")


def idx_folder(folder: str | Path, name: str | None = None, hint: str = "give a folder with MNIST-format IDX files") -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise FxpError(f"dataset folder {folder} does not exist; {hint}")
    parts = []
    for split in ("train", "t10k"):
        x = read_idx(_find(folder, f"{split}-images-idx3-ubyte", hint))
        y = read_idx(_find(folder, f"{split}-labels-idx1-ubyte", hint))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise FxpError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match; check the files")
        parts += [torch.from_numpy(normalize(x, IDX_LEVELS)).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
    return Dataset(name or folder.name, *parts, source=str(folder.resolve()), levels=IDX_LEVELS)


def load(name: str, seed: int = 0) -> Dataset:
    """``digits``, ``fashion-mnist``, or the path of an MNIST-format IDX folder."""
    if name == "digits":
        xtr, ytr, xte, yte = digits(seed)
        return Dataset(name, xtr.view(-1, 1, 8, 8), ytr, xte.view(-1, 1, 8, 8), yte, source=name, levels=DIGITS_LEVELS)
    if name == "fashion-mnist":
        data = idx_folder(FASHION_MNIST_DIR, name, "install it with: apt-get install dataset-fashion-mnist")
        data.source = name  # loaded again by its name, not from the install path
        return data
    check_dataset(name)
    return idx_folder(name)


def levels_of(name: str) -> int:
    """The largest raw pixel value of dataset ``name`` (as :func:`load` takes it), without loading it."""
    check_dataset(name)
    return DIGITS_LEVELS if name == "digits" else IDX_LEVELS


def check_dataset(name: str) -> None:
    """Refuse a dataset name that :func:`load` cannot take, before anything is loaded or trained."""
    if name in ("digits", "fashion-mnist"):
        return
    if not Path(name).exists():
        raise FxpError(f"dataset {name!r} is not digits, fashion-mnist or an existing folder of MNIST-format IDX files")
    if not Path(name).is_dir():
        raise FxpError(f"dataset {name} is a file; give a folder of MNIST-format IDX files (or digits, fashion-mnist)")
