"""Datasets: the embedded default (scikit-learn's 8x8 digits, no download needed)."""

from __future__ import annotations

import numpy as np
import torch


def digits(seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """8x8 digits as float32 pixels in [0, 1] (64 features) and int64 labels: x_train, y_train, x_test, y_test.

    The split is a seeded permutation, so the same seed gives the same split on every machine.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.data / 16.0).astype(np.float32))
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]
