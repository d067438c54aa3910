"""Weight sharing: a layer's weights replaced by a small codebook and one short index per weight.

Three ways to share, each with its exact storage in bits so they can be compared at equal bits per
weight (:func:`bits_per_weight`):

- **Scalar k-means** (Han, Mao and Dally, "Deep Compression", ICLR 2016, section 3): the weight values
  of one layer are clustered into ``k`` centroids by 1-D k-means (:func:`kmeans_1d`, :func:`share_weights`);
  each weight stores the ``ceil(log2 k)``-bit index of its centroid and the layer stores the ``k``
  centroids once (32 bits each): ``n x log2(k) + k x 32`` bits, their compression rate
  ``n b / (n log2(k) + k b)``. Given a pruning mask, only the kept weights are clustered and indexed,
  so the pruned zeros stay exactly zero and cost nothing here (their positions are the sparse format's
  business, :mod:`fxp.compress.sparse`). Of their three initializations, *linear* (centroids evenly
  spaced between the smallest and largest weight) kept the large weights best and is the default;
  *density* (evenly spaced over the weights' CDF) and *random* (Forgy: k of the weights) are here to
  compare.
- **Trained quantization** (Deep Compression, eq. 3): the centroids are fine-tuned while the indices
  stay fixed; the gradient of a centroid is the sum of the gradients of the weights that share it.
  :func:`shared_weight` builds the weight as ``codebook[index]`` masked, whose autograd backward is
  exactly that sum (:class:`SharedWeight` wraps it as a module with the codebook as its parameter).
- **Product and residual quantization** (Gong, Liu, Yang and Bourdev, "Compressing deep convolutional
  networks using vector quantization", 2014) share whole row segments instead of single values.
  Product quantization (:func:`product_quantize`) splits the ``(out, in)`` matrix's columns into ``s``
  blocks and clusters the rows of each block into ``k`` codewords of length ``in / s``:
  ``s x (out x log2(k) + k x (in / s) x 32)`` bits. Residual quantization (:func:`residual_quantize`)
  clusters the full rows, then the residuals of the rows, ``t`` times, and reconstructs a row as the
  sum of its ``t`` codewords: ``t x (out x log2(k) + k x in x 32)`` bits.

Rules shared by every k-means here: Lloyd iterations (assign each point to its nearest centroid, move
each centroid to the mean of its points) until the assignments stop changing or ``iters`` updates
have run; the returned assignments are always the nearest centroids of the returned centroids. A
centroid whose cluster empties keeps its place rather than being re-seeded, so the result depends on
the init alone and no iteration raises the cost; it still costs its codebook entry though no index
may use it (a later iteration can win points back for it). Means are accumulated in float64, so a cluster
of identical float32 values has exactly that value as its centroid. The same input, ``k``, ``init``,
``seed`` and ``iters`` give the same result: random draws come from a ``torch.Generator`` seeded with
``seed`` on the CPU, whatever the input's device. Index widths are ``ceil(log2 k)`` bits
(:func:`index_width`; 0 for a single centroid, which needs no index).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fxp.errors import FxpError

MAX_SHARE_BITS = 8  # Deep Compression shares conv layers with 8 bits and fc layers with 5; 256 centroids at most
INITS_1D = ("linear", "density", "random")
INITS_VECTORS = ("kmeans++", "linear")
CODEBOOK_BITS = 32  # a float32 centroid, as the papers count it


# --- checks ----------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_k(k, n: int, points: str) -> None:
    if not _is_int(k) or k < 1:
        raise FxpError(f"k must be a positive integer number of clusters, got {k!r}; give k >= 1 "
                       f"(k = 2**bits for bits-wide indices)")
    if k > n:
        raise FxpError(f"more clusters than {points}: k={k} for {n} {points}; give k at most {n}")


def _check_bits(bits) -> None:
    if not _is_int(bits) or not 1 <= bits <= MAX_SHARE_BITS:
        raise FxpError(f"bits must be an integer from 1 to {MAX_SHARE_BITS}, got {bits!r}; pick an index width in "
                       "that range (Deep Compression uses 8 for conv and 5 for fc layers)")


def _check_iters(iters) -> None:
    if not _is_int(iters) or iters < 1:
        raise FxpError(f"iters must be a positive integer, got {iters!r}; give the most Lloyd iterations to run "
                       "(100 is plenty for a layer)")


def _check_init(init, known: tuple[str, ...]) -> None:
    if init not in known:
        raise FxpError(f"init {init!r} is not known; use {', '.join(known[:-1])} or {known[-1]}")


def _real(t, what: str) -> torch.Tensor:
    """``t`` detached as float64, refused when it is not a finite real tensor."""
    if not isinstance(t, torch.Tensor):
        raise FxpError(f"{what} must be a torch.Tensor, got {type(t).__name__}; pass the weight tensor")
    if t.is_complex() or t.dtype == torch.bool:
        raise FxpError(f"{what} has dtype {t.dtype}; give real (float or integer) weights")
    x = t.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise FxpError(f"{what} holds NaN or inf; train or load finite weights before sharing them")
    return x


def _out_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def _check_matrix(w, what: str) -> torch.Tensor:
    if isinstance(w, torch.Tensor) and w.dim() != 2:
        raise FxpError(f"{what} needs an (out, in) matrix, got shape {tuple(w.shape)}; "
                       "give a conv weight as w.flatten(1)")
    return _real(w, what)


def index_width(k: int) -> int:
    """Bits that number ``k`` centroids: ``ceil(log2 k)``, 0 for a single centroid."""
    return (int(k) - 1).bit_length()


def _storage_widths(k: int, index_bits, codebook_bits) -> tuple[int, int]:
    need = index_width(k)
    if index_bits is None:
        index_bits = need
    if not _is_int(index_bits) or index_bits < need:
        raise FxpError(f"index_bits={index_bits!r} cannot number {k} centroids; give an integer of at least {need}")
    if not _is_int(codebook_bits) or codebook_bits < 1:
        raise FxpError(f"codebook_bits must be a positive integer, got {codebook_bits!r}; give the bits per "
                       "centroid (32 for float32, 8 for an int8 codebook)")
    return index_bits, codebook_bits


def bits_per_weight(storage_bits: int, n_weights: int) -> float:
    """Storage per weight of the dense layer it replaces: ``storage_bits / n_weights`` (32 for float32)."""
    if not _is_int(storage_bits) or storage_bits < 0:
        raise FxpError(f"storage_bits must be a non-negative integer, got {storage_bits!r}; "
                       "pass a storage_bits() result")
    if not _is_int(n_weights) or n_weights < 1:
        raise FxpError(f"n_weights must be a positive integer, got {n_weights!r}; pass the layer's weight.numel()")
    return storage_bits / n_weights


# --- scalar k-means ----------------------------------------------------------------------------------
def _nearest_1d(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of each value's nearest centroid: a search among the midpoints of the sorted centroids,
    O(n log k) without an (n, k) distance table (a VGG fc layer holds 10^8 weights). A value exactly
    halfway goes to the lower centroid; of equal centroids, the first in sorted order takes the values."""
    order = torch.argsort(c, stable=True)
    s = c[order]
    return order[torch.bucketize(x, (s[1:] + s[:-1]) / 2)]


def _start(init, k: int) -> torch.Tensor:
    """Given starting centroids (a previous codebook), checked: a 1-D tensor of ``k`` finite values, as float64."""
    c = _real(init, "the starting centroids")
    if c.dim() != 1 or c.numel() != k:
        raise FxpError(f"the starting centroids have shape {tuple(c.shape)}; give k={k} of them in a 1-D tensor "
                       "(e.g. the codebook of an earlier sharing)")
    return c


def _init_1d(x: torch.Tensor, k: int, init, seed: int) -> torch.Tensor:
    if isinstance(init, torch.Tensor):
        return _start(init, k).to(x.device)
    if init == "linear":
        return torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64, device=x.device)
    if init == "density":
        # the centres of k equal-probability slices of the weights' empirical CDF
        s = torch.sort(x).values
        at = ((torch.arange(k, dtype=torch.float64) + 0.5) * x.numel() / k).floor().long().clamp_max(x.numel() - 1)
        return s[at.to(x.device)]
    u = torch.unique(x)  # sorted, so the draw depends on the values only, not on their order
    if u.numel() < k:
        raise FxpError(f"random init draws k={k} distinct values but the weights hold {u.numel()}; "
                       "give a smaller k or init 'linear'")
    g = torch.Generator().manual_seed(seed)
    return u[torch.randperm(u.numel(), generator=g)[:k].to(x.device)]


def kmeans_1d(values: torch.Tensor, k: int, init: str | torch.Tensor = "linear", seed: int = 0,
              iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means of ``values`` (any shape, read flattened) into ``k`` clusters.

    ``init``: ``"linear"`` (k points evenly spaced over [min, max]), ``"density"`` (the values at the
    CDF levels (i + 1/2) / k), ``"random"`` (k distinct values drawn with ``seed``; only this init uses
    the seed), or a 1-D tensor of ``k`` starting centroids (an earlier codebook, to cluster weights
    retrained since from where that sharing left them). Returns ``(centroids, assignments)``: the centroids in ascending order, shape (k,), in the
    values' float dtype, and for each value (flattened) the int64 index of its centroid. Empty clusters
    and stopping: module docstring.
    """
    x = _real(values, "values").flatten()
    _check_k(k, x.numel(), "values")
    if not isinstance(init, torch.Tensor):
        _check_init(init, INITS_1D)
    _check_iters(iters)
    if not _is_int(seed):
        raise FxpError(f"seed must be an integer, got {seed!r}; give any integer (0 by default)")
    c = _init_1d(x, k, init, seed)
    assign = _nearest_1d(x, c)
    for _ in range(iters):
        count = torch.bincount(assign, minlength=k)
        total = torch.bincount(assign, weights=x, minlength=k)
        c = torch.where(count > 0, total / count.clamp_min(1), c)
        new = _nearest_1d(x, c)
        settled = torch.equal(new, assign)
        assign = new
        if settled:
            break
    order = torch.argsort(c, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k, device=order.device)
    return c[order].to(_out_dtype(values)), rank[assign]


def shared_weight(codebook: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The weight a codebook and its indices stand for: ``codebook[index]``, zero where ``mask`` is False.

    Differentiable in ``codebook``: indexing's backward accumulates, so the gradient of centroid ``j``
    is the sum of the upstream gradients at the kept positions with index ``j`` (Deep Compression's
    eq. 3); the pruned positions contribute nothing.
    """
    w = codebook[index]
    return w if mask is None else torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))


@dataclass(frozen=True, eq=False)
class SharedWeights:
    """One layer's weight as a codebook and an index per kept weight (build one with :func:`share_weights`).

    ``codebook``: (k,) centroids. ``index``: int64, the weight's shape, the centroid of each position
    (0 at pruned positions, where it is not stored). ``mask``: bool, the weight's shape, True where a
    weight is kept; all True when the layer was shared unpruned.
    """

    codebook: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        fix = "build it with share_weights(weight, k)"
        if self.codebook.dim() != 1 or self.codebook.numel() < 1 or not self.codebook.is_floating_point():
            raise FxpError(f"the codebook must be a non-empty 1-D float tensor, got {self.codebook.dtype} of shape "
                           f"{tuple(self.codebook.shape)}; {fix}")
        if self.mask.dtype != torch.bool or self.index.dtype != torch.long or self.index.shape != self.mask.shape:
            raise FxpError(f"index ({self.index.dtype}, {tuple(self.index.shape)}) and mask ({self.mask.dtype}, "
                           f"{tuple(self.mask.shape)}) must be int64 and bool of one shape; {fix}")
        kept = self.index[self.mask]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= self.k):
            raise FxpError(f"an index falls outside the {self.k} centroids; {fix}")

    @property
    def k(self) -> int:
        return self.codebook.numel()

    @property
    def n_indices(self) -> int:
        """Stored indices: one per kept weight."""
        return int(self.mask.sum())

    def dense(self) -> torch.Tensor:
        """The shared weight, pruned positions exactly 0 (detached; train through :func:`shared_weight`)."""
        return shared_weight(self.codebook.detach(), self.index, self.mask)

    def storage_bits(self, index_bits: int | None = None, codebook_bits: int = CODEBOOK_BITS) -> int:
        """Exact bits: ``n_indices x index_bits + k x codebook_bits``.

        Only kept positions store an index, as in Deep Compression's table 2, where the cluster indices
        are the values of the sparse entries: where the kept weights lie is the sparse format's cost,
        :meth:`fxp.compress.sparse.SparseMatrix.nbytes` with ``value_bits=index_bits`` (its filler
        entries each need an index too). ``index_bits`` defaults to :func:`index_width` of k.
        """
        index_bits, codebook_bits = _storage_widths(self.k, index_bits, codebook_bits)
        return self.n_indices * index_bits + self.k * codebook_bits


def share_weights(weight: torch.Tensor, k: int | None = None, *, bits: int | None = None,
                  mask: torch.Tensor | None = None, init: str | torch.Tensor = "linear", seed: int = 0,
                  iters: int = 100) -> SharedWeights:
    """Share one layer's weight among ``k`` centroids (or ``2**bits``, bits 1 to 8: give one of the two).

    With ``mask`` (bool, the weight's shape; e.g. :func:`fxp.compress.prune.kept`'s ``weight != 0``) only
    the kept weights are clustered, and the others read as exactly 0. ``init``, ``seed``, ``iters``: as
    for :func:`kmeans_1d`. The codebook has the weight's float dtype.
    """
    if (k is None) == (bits is None):
        raise FxpError("give the number of centroids either as k or as bits (k = 2**bits), exactly one of them")
    if bits is not None:
        _check_bits(bits)
        k = 1 << bits
    w = _real(weight, "weight")
    if mask is None:
        mask = torch.ones(w.shape, dtype=torch.bool, device=w.device)
    else:
        if not isinstance(mask, torch.Tensor) or mask.shape != w.shape:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise FxpError(f"the mask has shape {shape}, the weight {tuple(w.shape)}; give a bool mask of the "
                           "weight's shape (True where the weight is kept)")
        mask = (mask if mask.dtype == torch.bool else mask != 0).to(w.device)
    _check_k(k, int(mask.sum()), "kept weights")
    codebook, assign = kmeans_1d(w[mask], k, init=init, seed=seed, iters=iters)
    index = torch.zeros(w.shape, dtype=torch.long, device=w.device)
    index[mask] = assign
    return SharedWeights(codebook.to(_out_dtype(weight)), index, mask.clone())


class SharedWeight(nn.Module):
    """Trained quantization of one layer: the codebook is the parameter, the indices and mask fixed buffers.

    ``module()`` returns the weight (:func:`shared_weight`), to use as e.g. ``F.linear(x, module(), bias)``;
    an optimizer step then moves each centroid by its cluster's summed gradient, and pruned weights stay 0.
    """

    def __init__(self, shared: SharedWeights) -> None:
        super().__init__()
        self.codebook = nn.Parameter(shared.codebook.detach().clone())
        self.register_buffer("index", shared.index.clone())
        self.register_buffer("mask", shared.mask.clone())

    def forward(self) -> torch.Tensor:
        return shared_weight(self.codebook, self.index, self.mask)

    def shared(self) -> SharedWeights:
        """The trained codebook with the fixed indices, as a :class:`SharedWeights` (copies)."""
        return SharedWeights(self.codebook.detach().clone(), self.index.clone(), self.mask.clone())


# --- vector k-means ----------------------------------------------------------------------------------
def _nearest(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of each row (first of equals), from |x|^2 - 2 x.c + |c|^2: an (n, k) table, not (n, k, d)."""
    d2 = (x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)
    return d2.argmin(1)


def _kmeanspp(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k-means++ (Arthur and Vassilvitskii 2007): the first centre a uniform draw, each next one a row drawn
    with probability proportional to its squared distance to the nearest centre so far. Once every
    distinct row is a centre (all distances 0) the rest repeat rows drawn uniformly; their clusters stay
    empty."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=g))
    chosen = [first]
    d2 = ((x - x[first]) ** 2).sum(1)  # exact differences: a row equal to a centre is at exactly 0
    for _ in range(1, k):
        u = float(torch.rand((), dtype=torch.float64, generator=g))
        cum = torch.cumsum(d2, 0).cpu()
        total = float(cum[-1])
        if total > 0:
            # the first row whose running sum passes u x total: never a row at distance 0
            pick = min(int(torch.searchsorted(cum, torch.tensor([u * total], dtype=torch.float64), right=True)),
                       int(torch.nonzero(d2.cpu() > 0)[-1]))
        else:
            pick = min(int(u * n), n - 1)
        chosen.append(pick)
        d2 = torch.minimum(d2, ((x - x[pick]) ** 2).sum(1))
    return x[torch.tensor(chosen, device=x.device)].clone()


def _linear_vectors(x: torch.Tensor, k: int) -> torch.Tensor:
    """k points evenly spaced along the rows' first principal direction, between the extreme projections:
    the vector form of Deep Compression's linear init. The direction's sign is fixed (its largest
    component positive) so the init does not depend on the SVD's sign choice."""
    mean = x.mean(0)
    xc = x - mean
    v = torch.linalg.svd(xc, full_matrices=False).Vh[0]
    v = v * torch.sign(v[v.abs().argmax()])
    p = xc @ v
    steps = torch.linspace(float(p.min()), float(p.max()), k, dtype=x.dtype, device=x.device)
    return mean + steps[:, None] * v


def kmeans_vectors(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100,
                   init: str = "kmeans++") -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of the rows of ``x`` (n, d) into ``k`` codewords.

    ``init``: ``"kmeans++"`` (seeded D² sampling, the default: it finds every cluster of well-separated
    data with high probability, and exactly k distinct rows always) or ``"linear"`` (evenly spaced along
    the first principal direction, no randomness). Returns ``(centroids (k, d), assignments (n,) int64)``,
    the centroids in ``x``'s float dtype. Empty clusters and stopping: module docstring.
    """
    if isinstance(x, torch.Tensor) and x.dim() != 2:
        raise FxpError(f"kmeans_vectors clusters the rows of an (n, d) matrix, got shape {tuple(x.shape)}; "
                       "reshape the vectors to one per row")
    v = _real(x, "x")
    _check_k(k, v.shape[0], "rows")
    _check_init(init, INITS_VECTORS)
    _check_iters(iters)
    if not _is_int(seed):
        raise FxpError(f"seed must be an integer, got {seed!r}; give any integer (0 by default)")
    c = _kmeanspp(v, k, seed) if init == "kmeans++" else _linear_vectors(v, k)
    assign = _nearest(v, c)
    for _ in range(iters):
        count = torch.bincount(assign, minlength=k)
        total = torch.zeros_like(c).index_add_(0, assign, v)
        c = torch.where((count > 0)[:, None], total / count.clamp_min(1)[:, None], c)
        new = _nearest(v, c)
        settled = torch.equal(new, assign)
        assign = new
        if settled:
            break
    return c.to(_out_dtype(x)), assign


# --- product and residual quantization ----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ProductQuantized:
    """An (out, in) matrix as ``s`` column blocks, each row segment one of ``k`` codewords.

    ``codebooks``: (s, k, in / s), block ``j``'s codewords. ``index``: (out, s) int64, the codeword of
    each row in each block. Build one with :func:`product_quantize`.
    """

    codebooks: torch.Tensor
    index: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        s, _, d = self.codebooks.shape
        return self.index.shape[0], s * d

    def dense(self) -> torch.Tensor:
        """The reconstructed matrix: each block's rows replaced by their codewords."""
        s = self.codebooks.shape[0]
        blocks = self.codebooks[torch.arange(s, device=self.index.device)[None, :], self.index]  # (out, s, d)
        return blocks.reshape(self.shape)

    def storage_bits(self, index_bits: int | None = None, codebook_bits: int = CODEBOOK_BITS) -> int:
        """Exact bits, per block ``out x index_bits + k x (in / s) x codebook_bits`` (Gong et al.:
        ``log2(k) m s + 32 k n`` in all); ``index_bits`` defaults to :func:`index_width` of k."""
        s, k, d = self.codebooks.shape
        index_bits, codebook_bits = _storage_widths(k, index_bits, codebook_bits)
        return s * (self.index.shape[0] * index_bits + k * d * codebook_bits)


def product_quantize(w: torch.Tensor, s: int, k: int, seed: int = 0, iters: int = 100,
                     init: str = "kmeans++") -> ProductQuantized:
    """Product quantization of ``w`` (out, in): ``s`` contiguous column blocks of ``in / s`` columns, the
    rows of each clustered into ``k`` codewords by :func:`kmeans_vectors` (block ``j`` with seed ``seed + j``)."""
    v = _check_matrix(w, "product_quantize")
    out, cols = v.shape
    if not _is_int(s) or s < 1 or cols % s:
        divisors = [d for d in range(1, cols + 1) if cols % d == 0]
        raise FxpError(f"s={s!r} does not split {cols} columns into equal blocks; give s dividing {cols}: "
                       f"{', '.join(map(str, divisors))}")
    _check_k(k, out, "rows")
    parts = [kmeans_vectors(b, k, seed=seed + j, iters=iters, init=init) for j, b in enumerate(v.chunk(s, dim=1))]
    codebooks = torch.stack([c for c, _ in parts]).to(_out_dtype(w))
    return ProductQuantized(codebooks, torch.stack([a for _, a in parts], dim=1))


@dataclass(frozen=True, eq=False)
class ResidualQuantized:
    """An (out, in) matrix as the sum of ``t`` codewords per row, stage ``i``'s codewords clustering the
    rows left over after stages ``0 .. i-1``.

    ``codebooks``: (t, k, in). ``index``: (out, t) int64. Build one with :func:`residual_quantize`.
    """

    codebooks: torch.Tensor
    index: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.index.shape[0], self.codebooks.shape[2]

    def dense(self) -> torch.Tensor:
        """The reconstructed matrix: the sum of each row's stage codewords (added in float64)."""
        t = self.codebooks.shape[0]
        words = self.codebooks[torch.arange(t, device=self.index.device)[None, :], self.index]  # (out, t, in)
        return words.sum(1, dtype=torch.float64).to(self.codebooks.dtype)

    def storage_bits(self, index_bits: int | None = None, codebook_bits: int = CODEBOOK_BITS) -> int:
        """Exact bits: ``t x (out x index_bits + k x in x codebook_bits)``; ``index_bits`` defaults to
        :func:`index_width` of k."""
        t, k, cols = self.codebooks.shape
        index_bits, codebook_bits = _storage_widths(k, index_bits, codebook_bits)
        return t * (self.index.shape[0] * index_bits + k * cols * codebook_bits)


def residual_quantize(w: torch.Tensor, t: int, k: int, seed: int = 0, iters: int = 100,
                      init: str = "kmeans++") -> ResidualQuantized:
    """Residual quantization of ``w`` (out, in): ``t`` stages of :func:`kmeans_vectors` (stage ``i`` with seed
    ``seed + i``), each on the rows minus the codewords of the stages before. The first ``t - 1`` stages are
    those of a ``t - 1``-stage run, and a stage leaves each residual at most as far from its cluster's
    mean as from 0 (Lloyd's last update makes every codeword such a mean, and reassigning to the nearest
    only helps), so the error does not grow with ``t``."""
    r = _check_matrix(w, "residual_quantize")
    if not _is_int(t) or t < 1:
        raise FxpError(f"t must be a positive integer number of stages, got {t!r}; give t >= 1")
    _check_k(k, r.shape[0], "rows")
    books, indices = [], []
    for i in range(t):
        c, a = kmeans_vectors(r, k, seed=seed + i, iters=iters, init=init)  # r is float64: so are c
        r = r - c[a]
        books.append(c)
        indices.append(a)
    return ResidualQuantized(torch.stack(books).to(_out_dtype(w)), torch.stack(indices, dim=1))



class Sharer:
    """Keeps a model's layers tied to their codebooks while it retrains (Deep Compression's trained quantization).

    ``shared``: layer name (as :func:`fxp.compress.prune.prunable` names them) → :class:`SharedWeights`.
    The layers keep their own ``weight`` parameters, so any optimizer and every mode trains them: the
    pruned positions' gradients are zeroed (:class:`~fxp.compress.prune.Pruner`), and after each step
    every centroid moves by the sum of its members' updates and the weights are tied to it again. With
    SGD a member's update is ``-lr x`` its gradient, so the centroid moves by ``-lr x`` the summed
    gradient: eq. 3 of Deep Compression; with momentum, by the sum of the members' momentum updates.
    Members: ``shared`` (the codebooks, updated in place), ``history`` (as the Pruner's).
    """

    def __init__(self, model: nn.Module, shared: dict[str, SharedWeights]) -> None:
        from fxp.compress.prune import Pruner, kept

        self.shared = {n: SharedWeights(s.codebook.detach().clone(), s.index, s.mask) for n, s in shared.items()}
        # the layers not shared keep their zeros too
        self.pruner = Pruner(model, {**kept(model), **{n: s.mask for n, s in self.shared.items()}})
        self.layers = self.pruner.layers
        self.history = self.pruner.history
        self._kept_index = {n: s.index[s.mask] for n, s in self.shared.items()}  # fixed: only centroids move
        self._tie()

    @torch.no_grad()
    def _tie(self) -> None:
        self._tied = {}  # each layer's shared weights as tied, for the next step's updates
        for n, s in self.shared.items():
            dense = s.dense()
            self.layers[n].weight.copy_(dense.to(self.layers[n].weight.dtype))
            self._tied[n] = dense.double()

    def start_epoch(self, epoch: int) -> None:
        self.pruner.start_epoch(epoch)

    @torch.no_grad()
    def after_step(self) -> None:
        for n, s in self.shared.items():
            moved = (self.layers[n].weight.double() - self._tied[n])[s.mask]
            step = torch.zeros(s.k, dtype=torch.float64).index_add_(0, self._kept_index[n], moved)
            s.codebook.add_(step.to(s.codebook.dtype))
        self._tie()

    def remove(self) -> None:
        self.pruner.remove()
