import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

import fxp.datasets as ds
from fxp import FxpError


def idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def make_folder(path, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    parts = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, arr in parts.items():
        data = idx_bytes(arr)
        if gz:
            (path / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (path / name).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_round_trip(tmp_path, gz):
    parts = make_folder(tmp_path / "d", gz=gz)
    d = ds.load(str(tmp_path / "d"))
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert np.array_equal((d.x_train[:, 0] * 255).round().numpy().astype(np.int64), parts["train-images-idx3-ubyte"])
    assert d.y_test.tolist() == parts["t10k-labels-idx1-ubyte"].tolist()


def test_corrupt_and_missing_files_name_the_path(tmp_path):
    make_folder(tmp_path / "d", gz=False)
    f = tmp_path / "d" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(FxpError, match=f"{f} is truncated or corrupt"):
        ds.load(str(tmp_path / "d"))
    f.write_bytes(b"\x12\x34\x56\x78" + b"\0" * 100)
    with pytest.raises(FxpError, match="not an IDX file"):
        ds.load(str(tmp_path / "d"))
    f.unlink()
    with pytest.raises(FxpError, match=r"train-images-idx3-ubyte\[.gz\] is missing"):
        ds.load(str(tmp_path / "d"))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(FxpError, match="cannot read IDX file"):
        ds.read_idx(tmp_path / "e" / "train-images-idx3-ubyte.gz")
    with pytest.raises(FxpError, match="is not digits, fashion-mnist or an existing folder"):
        ds.load(str(tmp_path / "nope"))


def test_fashion_mnist_from_the_debian_package():
    d = ds.load("fashion-mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.classes == 10 and float(d.x_train.max()) == 1.0


def test_fashion_mnist_missing_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(FxpError, match="apt-get install dataset-fashion-mnist"):
        ds.load("fashion-mnist")


def test_cli_refuses_mismatched_model_and_dataset(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fxp.cli", "train", "--model", "lenet5", "--dataset", "digits",
                        "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 2 and "takes input [1, 28, 28] but dataset digits has [1, 8, 8]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_digits_split_is_deterministic():
    a, b = ds.load("digits", seed=3), ds.load("digits", seed=3)
    assert np.array_equal(a.x_test.numpy(), b.x_test.numpy()) and len(a.x_train) + len(a.x_test) == 1797
