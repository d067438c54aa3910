"""Weight sharing (fxp.compress.sharing): k-means centroids, masked sharing, the centroid gradient of
trained quantization, product and residual quantization, and their exact storage."""

from __future__ import annotations

import pytest
import torch

from fxp.compress.sharing import (
    SharedWeight,
    SharedWeights,
    bits_per_weight,
    index_width,
    kmeans_1d,
    kmeans_vectors,
    product_quantize,
    residual_quantize,
    share_weights,
    shared_weight,
)
from fxp.errors import FxpError

MEANS = (-1.0, 0.2, 3.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: a second OpenMP thread only spins against the other jobs on the cores
    (index_add_ on 64 x 16 took 60 ms with two threads, 10 us with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _three_clusters() -> tuple[torch.Tensor, torch.Tensor]:
    """40 values around each of -1, 0.2 and 3 (noise 0.01), shuffled; and the three clusters' means (float64)."""
    g = torch.Generator().manual_seed(1)
    v = torch.tensor(MEANS).repeat_interleave(40) + 0.01 * torch.randn(120, generator=g)
    v = v[torch.randperm(120, generator=g)]
    means = torch.stack([v[(v - m).abs() < 0.5].double().mean() for m in MEANS])
    return v, means


def _patterns(out: int, cols: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An (out, cols) float32 matrix whose rows are k distinct random patterns, each used at least once."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(k, cols, generator=g)
    which = torch.cat([torch.arange(k), torch.randint(k, (out - k,), generator=g)])
    return words[which[torch.randperm(out, generator=g)]], words


# --- scalar k-means ----------------------------------------------------------------------------------
# seed 0 draws one value of each cluster for the random init; a draw with two in the top cluster leaves
# the middle one with the bottom one's centroid, a fixed point of Lloyd's iterations (why Deep
# Compression prefers the linear init)
@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_1d_finds_three_separated_clusters(init):
    v, means = _three_clusters()
    c, a = kmeans_1d(v, 3, init=init, seed=0)
    assert c.shape == (3,) and c.dtype == torch.float32 and a.shape == (120,) and a.dtype == torch.long
    assert (c.double() - means).abs().max() < 1e-6
    # ascending centroids, each value assigned to its own cluster's
    assert torch.equal(a, (v[:, None] - torch.tensor(MEANS)).abs().argmin(1))


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_1d_is_deterministic(init):
    v = torch.randn(500, generator=torch.Generator().manual_seed(3))
    c1, a1 = kmeans_1d(v, 8, init=init, seed=7)
    c2, a2 = kmeans_1d(v.clone(), 8, init=init, seed=7)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)


def test_kmeans_1d_centroids_are_the_means_of_their_clusters_and_assignments_the_nearest():
    v = torch.randn(400, generator=torch.Generator().manual_seed(4)).double()
    c, a = kmeans_1d(v, 5)
    for j in range(5):
        assert c[j] == pytest.approx(float(v[a == j].mean()), abs=1e-12)
    assert torch.equal(a, (v[:, None] - c).abs().argmin(1))


def test_kmeans_1d_refuses_bad_k_init_and_iters():
    v = torch.randn(10)
    with pytest.raises(FxpError, match=r"more clusters than values: k=11 for 10 values; give k at most 10"):
        kmeans_1d(v, 11)
    for k in (0, -2, 2.0, True):
        with pytest.raises(FxpError, match="k must be a positive integer"):
            kmeans_1d(v, k)
    with pytest.raises(FxpError, match="init 'uniform' is not known; use linear, density or random"):
        kmeans_1d(v, 2, init="uniform")
    with pytest.raises(FxpError, match="iters must be a positive integer"):
        kmeans_1d(v, 2, iters=0)
    with pytest.raises(FxpError, match="NaN or inf"):
        kmeans_1d(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(FxpError, match="random init draws k=3 distinct values but the weights hold 2"):
        kmeans_1d(torch.tensor([1.0, 1.0, 2.0, 2.0]), 3, init="random")


def test_kmeans_1d_from_given_centroids_is_lloyd_from_there():
    """A later sharing round starts from the last codebook: given centroids are Lloyd's start, so the linear
    init's points give the linear result, a codebook already at its clusters' means stays put, and the
    start need not be sorted (the result is)."""
    v = torch.randn(300, generator=torch.Generator().manual_seed(6)).double()
    start = torch.linspace(float(v.min()), float(v.max()), 6, dtype=torch.float64)
    c, a = kmeans_1d(v, 6)
    c2, a2 = kmeans_1d(v, 6, init=start.flip(0))
    assert torch.equal(c, c2) and torch.equal(a, a2)
    again, a3 = kmeans_1d(v, 6, init=c)
    assert torch.equal(again, c) and torch.equal(a3, a)
    shared = share_weights(v.float().view(20, 15), 6, init=c.float())
    assert shared.codebook.dtype == torch.float32 and shared.k == 6
    for bad in (c[:5], c.view(2, 3), torch.tensor([0.0, float("inf"), 1, 2, 3, 4])):
        with pytest.raises(FxpError, match="starting centroids|NaN or inf"):
            kmeans_1d(v, 6, init=bad)


def test_an_empty_cluster_keeps_its_centroid():
    # linear init puts centroids at 0, 5, 10; no value lies nearest 5, so its cluster is empty from the start
    v = torch.tensor([0.0, 0.0, 0.5, 9.5, 10.0, 10.0])
    c, a = kmeans_1d(v, 3)
    assert torch.equal(c, torch.tensor([1 / 6, 5.0, 59 / 6]))
    assert a.tolist() == [0, 0, 0, 2, 2, 2]


# --- sharing a layer -----------------------------------------------------------------------------------
def test_share_weights_with_bits_is_2_to_the_bits_centroids_and_dense_reads_them():
    w = torch.randn(16, 20, generator=torch.Generator().manual_seed(5))
    sw = share_weights(w, bits=3)
    assert sw.k == 8 and sw.index.shape == w.shape and sw.n_indices == 320
    d = sw.dense()
    assert d.dtype == w.dtype and torch.equal(d, sw.codebook[sw.index])
    assert torch.equal(d.unique(), sw.codebook.unique())
    # every weight reads its nearest centroid
    assert torch.equal(sw.index, (w[..., None] - sw.codebook).abs().argmin(-1))
    assert sw.storage_bits() == 320 * 3 + 8 * 32
    assert bits_per_weight(sw.storage_bits(), w.numel()) == (320 * 3 + 8 * 32) / 320


def test_masked_sharing_keeps_pruned_zeros_and_does_not_cluster_or_count_them():
    g = torch.Generator().manual_seed(6)
    w = torch.where(torch.rand(30, 30, generator=g) < 0.5, -1.0, 1.0) + 0.05 * torch.randn(30, 30, generator=g)
    mask = torch.rand(30, 30, generator=g) < 0.3
    w = w * mask  # pruned: 70 % zeros
    sw = share_weights(w, k=2, mask=mask)
    d = sw.dense()
    assert torch.equal(d[~mask], torch.zeros(int((~mask).sum())))
    assert bool((d[mask] != 0).all())
    # the zeros were not clustered: the centroids are the means of the kept weights near -1 and +1
    kept = w[mask].double()
    assert torch.allclose(sw.codebook.double(), torch.stack([kept[kept < 0].mean(), kept[kept > 0].mean()]),
                          atol=1e-6)
    n = int(mask.sum())
    assert sw.n_indices == n and sw.storage_bits() == n * 1 + 2 * 32 and sw.storage_bits(5, 16) == n * 5 + 2 * 16
    # unmasked, the 0s would be weights: a centroid near 0 takes them
    assert share_weights(w, k=3).codebook.abs().min() < 0.01


def test_storage_bits_hand_example():
    # a 4 x 4 layer with 6 kept weights and 4 centroids: 6 indices of 2 bits and 4 float32 centroids
    w = torch.zeros(4, 4)
    w[[0, 0, 1, 2, 3, 3], [0, 3, 1, 2, 0, 2]] = torch.tensor([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0])
    sw = share_weights(w, k=4, mask=w != 0)
    assert sw.storage_bits() == 140
    assert sw.storage_bits(index_bits=8, codebook_bits=8) == 6 * 8 + 4 * 8
    with pytest.raises(FxpError, match="index_bits=1 cannot number 4 centroids; give an integer of at least 2"):
        sw.storage_bits(index_bits=1)
    with pytest.raises(FxpError, match="codebook_bits must be a positive integer"):
        sw.storage_bits(codebook_bits=0)


def test_index_width_and_bits_per_weight():
    assert [index_width(k) for k in (1, 2, 3, 4, 5, 16, 17, 256)] == [0, 1, 2, 2, 3, 4, 5, 8]
    assert bits_per_weight(64, 16) == 4.0
    with pytest.raises(FxpError, match="n_weights must be a positive integer"):
        bits_per_weight(64, 0)


def test_share_weights_refuses_bad_k_bits_and_mask():
    w = torch.randn(3, 4)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, :3] = True
    with pytest.raises(FxpError, match=r"more clusters than kept weights: k=4 for 3 kept weights; give k at most 3"):
        share_weights(w, k=4, mask=mask)
    with pytest.raises(FxpError, match="more clusters than kept weights: k=16 for 12"):
        share_weights(w, bits=4)
    with pytest.raises(FxpError, match="k must be a positive integer"):
        share_weights(w, k=0)
    for bits in (0, 9, 2.5):
        with pytest.raises(FxpError, match="bits must be an integer from 1 to 8"):
            share_weights(w, bits=bits)
    with pytest.raises(FxpError, match="exactly one of them"):
        share_weights(w, k=2, bits=1)
    with pytest.raises(FxpError, match="exactly one of them"):
        share_weights(w)
    with pytest.raises(FxpError, match=r"the mask has shape \(4, 3\), the weight \(3, 4\)"):
        share_weights(w, k=2, mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(FxpError, match="an index falls outside the 2 centroids"):
        SharedWeights(torch.zeros(2), torch.full((3,), 2), torch.ones(3, dtype=torch.bool))


# --- trained centroids ---------------------------------------------------------------------------------
def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    g = torch.Generator().manual_seed(8)
    w = torch.randn(12, 9, generator=g)
    mask = torch.rand(12, 9, generator=g) < 0.6
    sw = share_weights(w * mask, k=5, mask=mask)
    codebook = torch.nn.Parameter(sw.codebook.clone())
    # eighths below 8: any float32 sum of them is exact, whatever order autograd adds them in
    upstream = torch.randint(-64, 64, (12, 9), generator=g).float() / 8
    weight = shared_weight(codebook, sw.index, sw.mask)
    assert torch.equal(weight.detach(), sw.dense())
    weight.backward(upstream)
    # Deep Compression's eq. 3, by hand: per cluster, the sum of the kept weights' gradients (pruned
    # positions carry a nonzero upstream gradient here and must not count)
    expected = torch.zeros(5, dtype=torch.float64).scatter_add_(0, sw.index[mask], upstream[mask].double())
    assert torch.equal(codebook.grad.double(), expected)
    assert float(upstream[~mask].abs().sum()) > 0


def test_shared_weight_module_trains_centroids_and_keeps_pruned_weights_at_zero():
    g = torch.Generator().manual_seed(9)
    w = torch.randn(6, 10, generator=g)
    mask = torch.rand(6, 10, generator=g) < 0.5
    sw = share_weights(w, bits=2, mask=mask)
    module = SharedWeight(sw)
    x, target = torch.randn(32, 10, generator=g), torch.randn(32, 6, generator=g)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = ((torch.nn.functional.linear(x, module()) - target) ** 2).mean()
    loss.backward()
    grad = module.codebook.grad.clone()
    opt.step()
    after = module.shared()
    assert torch.allclose(after.codebook, sw.codebook - 0.1 * grad)
    assert torch.equal(after.index, sw.index) and bool((after.dense()[~mask] == 0).all())
    assert not torch.equal(after.codebook, sw.codebook)


# --- product and residual quantization ---------------------------------------------------------------
def test_kmeans_vectors_finds_exactly_k_distinct_rows_and_is_deterministic():
    x, words = _patterns(50, 6, 7, seed=10)
    c, a = kmeans_vectors(x, 7, seed=3)
    assert torch.equal(c[a], x)
    assert torch.equal(c[c[:, 0].argsort()], words[words[:, 0].argsort()])
    c2, a2 = kmeans_vectors(x.clone(), 7, seed=3)
    assert torch.equal(c, c2) and torch.equal(a, a2)
    # the linear init is deterministic too and its codewords are the means of their rows
    cl, al = kmeans_vectors(x, 7, init="linear")
    assert torch.equal(cl, kmeans_vectors(x, 7, init="linear")[0])
    for j in al.unique():
        assert torch.allclose(cl[j], x[al == j].mean(0), atol=1e-6)


def test_kmeans_vectors_refuses_more_clusters_than_rows():
    with pytest.raises(FxpError, match="more clusters than rows: k=5 for 4 rows; give k at most 4"):
        kmeans_vectors(torch.randn(4, 3), 5)
    with pytest.raises(FxpError, match="init 'random' is not known; use kmeans\\+\\+ or linear"):
        kmeans_vectors(torch.randn(4, 3), 2, init="random")


def test_product_quantization_reconstructs_k_patterns_per_block_exactly():
    s, k, out, d = 3, 4, 40, 5
    blocks = [_patterns(out, d, k, seed=20 + j)[0] for j in range(s)]  # each block its own k row patterns
    w = torch.cat(blocks, dim=1)
    pq = product_quantize(w, s=s, k=k)
    assert pq.codebooks.shape == (s, k, d) and pq.index.shape == (out, s) and pq.shape == (out, s * d)
    assert torch.equal(pq.dense(), w)
    assert pq.storage_bits() == s * (out * 2 + k * d * 32)


def test_product_quantization_storage_hand_example():
    # 6 x 8 in 2 blocks of 4 columns, 4 codewords each: per block 6 indices of 2 bits + 4 x 4 floats
    pq = product_quantize(torch.randn(6, 8, generator=torch.Generator().manual_seed(11)), s=2, k=4)
    assert pq.storage_bits() == 1048
    assert pq.storage_bits(index_bits=8, codebook_bits=8) == 2 * (6 * 8 + 4 * 4 * 8)


def test_product_quantization_refuses_s_not_dividing_the_columns():
    divisors = "s=3 does not split 10 columns into equal blocks; give s dividing 10: 1, 2, 5, 10"
    with pytest.raises(FxpError, match=divisors):
        product_quantize(torch.randn(8, 10), s=3, k=2)
    with pytest.raises(FxpError, match="more clusters than rows: k=9 for 8 rows"):
        product_quantize(torch.randn(8, 10), s=2, k=9)
    with pytest.raises(FxpError, match=r"needs an \(out, in\) matrix, got shape \(2, 3, 4\); give a conv weight as"):
        product_quantize(torch.randn(2, 3, 4), s=1, k=2)


def test_residual_quantization_reconstructs_k_patterns_exactly():
    w, _ = _patterns(30, 6, 4, seed=12)
    rq = residual_quantize(w, t=2, k=4)
    assert rq.codebooks.shape == (2, 4, 6) and rq.index.shape == (30, 2) and rq.shape == (30, 6)
    assert torch.equal(rq.dense(), w)
    assert torch.equal(rq.codebooks[1], torch.zeros(4, 6))  # nothing left for the second stage


def test_residual_quantization_storage_hand_example():
    # 6 x 4, two stages of 2 codewords: per stage 6 one-bit indices + 2 x 4 floats
    rq = residual_quantize(torch.randn(6, 4, generator=torch.Generator().manual_seed(13)), t=2, k=2)
    assert rq.storage_bits() == 524
    with pytest.raises(FxpError, match="t must be a positive integer"):
        residual_quantize(torch.randn(6, 4), t=0, k=2)


def test_residual_quantization_error_does_not_grow_with_stages():
    w = torch.randn(64, 16, generator=torch.Generator().manual_seed(14))
    errors = [float(((residual_quantize(w, t=t, k=4).dense() - w) ** 2).sum()) for t in range(1, 6)]
    assert all(b <= a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.8 * errors[0]
    # the stages of a shorter run are the first stages of a longer one
    assert torch.equal(residual_quantize(w, t=2, k=4).codebooks, residual_quantize(w, t=3, k=4).codebooks[:2])
