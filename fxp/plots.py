"""PNG figures for reports. Each function returns PNG bytes: deterministic (no timestamps or version tags)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import nn  # noqa: E402


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_bits(series: dict[str, list[tuple[int, float]]], float_acc: float | None, xlabel: str,
                     references: dict[str, float] | None = None) -> bytes:
    """One line per series of (bits, accuracy in [0, 1]); a dashed line for float, dotted ones for ``references``."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, pts in series.items():
        ax.plot([b for b, _ in pts], [100 * a for _, a in pts], "o-", label=name)
    if float_acc is not None:
        ax.axhline(100 * float_acc, color="gray", ls="--", label="float32")
    for i, (name, acc) in enumerate((references or {}).items()):
        ax.axhline(100 * acc, color=f"C{i + 1}", ls=":", lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png(fig)


def training_curves(metrics: dict) -> bytes:
    """Loss and accuracy per epoch; with a float baseline, also the accuracy gap per epoch."""
    return png(training_figure(metrics))


# the run solid with filled circles, the baseline dashed with hollow squares: where they overlap both stay visible
_RUN_STYLE = {"color": "C0", "ls": "-", "marker": "o", "ms": 4}
_BASELINE_STYLE = {"color": "C1", "ls": "--", "marker": "s", "ms": 6, "mfc": "none", "alpha": 0.75}


def training_figure(metrics: dict):
    """The figure of :func:`training_curves` (a matplotlib Figure, for callers that add to it)."""
    baseline = metrics.get("float_baseline")
    fig, axes = plt.subplots(1, 3 if baseline else 2, figsize=(13.5 if baseline else 9, 3.4), dpi=110)
    ax1, ax2 = axes[0], axes[1]
    runs = [(metrics["mode"], metrics["epochs"], _RUN_STYLE)]
    if baseline:
        runs.append(("float baseline", baseline["epochs"], _BASELINE_STYLE))
    for name, hist, style in runs:
        ep = [h["epoch"] for h in hist]
        train_style = {"color": style["color"], "ls": ":" if style is _RUN_STYLE else "-.", "lw": 1, "alpha": 0.6}
        ax1.plot(ep, [h["train_loss"] for h in hist], label=name, **style)
        ax2.plot(ep, [100 * h["test_accuracy"] for h in hist], label=f"{name} (test)", **style)
        ax2.plot(ep, [100 * h["train_accuracy"] for h in hist], label=f"{name} (train)", **train_style)
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if baseline:
        _gap_panel(axes[2], metrics["mode"], metrics["epochs"], baseline["epochs"])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.5
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    fig.suptitle(f"{metrics['model']} on {metrics['dataset']}, {metrics['mode']} mode")
    fig.tight_layout()
    return fig


def _gap_panel(ax, mode: str, hist: list[dict], base: list[dict]) -> None:
    """Float baseline minus the run's test accuracy, in points, per epoch both have."""
    run_acc = {h["epoch"]: h["test_accuracy"] for h in hist}
    ep = [h["epoch"] for h in base if h["epoch"] in run_acc]
    gap = [100 * (h["test_accuracy"] - run_acc[h["epoch"]]) for h in base if h["epoch"] in run_acc]
    ax.bar(ep, gap, color=["C3" if g > 0 else "C2" for g in gap], alpha=0.8, width=0.6)
    ax.axhline(0, color="black", lw=0.8)
    if gap:
        ax.annotate(f"{gap[-1]:+.2f}", (ep[-1], gap[-1]), textcoords="offset points",
                    xytext=(0, 3 if gap[-1] >= 0 else -10), ha="center", fontsize=7)
    ax.set(xlabel="epoch", ylabel="points (float − " + mode + ")", title="accuracy gap to float (test)")


def forward_weights(model: nn.Module) -> list[dict]:
    """Every layer's weight as its forward pass uses it: ``name``, ``values``, ``format`` (or None), ``kind``.

    qat layers give their rounded weights (not the float masters), fixed layers their stored grid
    values, binarized layers what they multiply by (sign, or alpha * sign for BWN).
    """
    from fxp.binary import BinaryLinear, BWNConv2d, BWNLinear, XNORConv2d, bwn_weight

    out = []
    for mname, m in model.named_modules():
        w = dict(m.named_parameters(recurse=False)).get("weight")
        if w is None or w.dim() < 2:
            continue
        fmt, kind, values = None, "float32", w.detach()
        tracker = getattr(m, "ptrack", {}).get("weight")
        if hasattr(m, "qparam") and m.cfg.mode != "float":
            if tracker is None or tracker.frac_bits is None:
                kind = "float32, no format yet"
            else:
                was = m.training
                m.eval()  # eval: qparam only reads the format, it does not count overflows
                with torch.no_grad():
                    values = m.qparam("weight").detach()
                m.train(was)
                fmt = str(tracker.fmt)
                kind = "rounded, as the forward uses it" if m.cfg.mode == "qat" else "stored on its grid"
        elif isinstance(m, (BinaryLinear, XNORConv2d)):  # XNOR-Net scales the product, not the weights
            values, kind = torch.where(values >= 0, 1.0, -1.0), "sign(w), as the forward uses it"
        elif isinstance(m, (BWNLinear, BWNConv2d)):
            with torch.no_grad():
                values = bwn_weight(values)
            kind = "α·sign(w), as the forward uses it"
        out.append({"name": f"{mname}.weight" if mname else "weight", "values": values.flatten(),
                    "format": fmt, "kind": kind})
    return out


def _grid(n: int, width: float = 3.6, height: float = 2.7, dpi: int = 110):
    """A figure of ``n`` panels, three to a row; the axes flat, the unused ones switched off."""
    cols = max(1, min(3, n))
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), dpi=dpi, squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def weight_histograms(model: nn.Module) -> bytes:
    """The distribution of every layer's weights as the forward pass uses them, one panel per layer."""
    return png(weight_figure(model))


def weight_figure(model: nn.Module):
    """The figure of :func:`weight_histograms`."""
    weights = forward_weights(model)
    fig, axes = _grid(len(weights), width=3.4)
    for ax, w in zip(axes, weights, strict=True):
        v = w["values"].double()
        distinct = torch.unique(v)
        _histogram(ax, v, distinct, w["format"])
        label = f"{w['format']}, {w['kind']}" if w["format"] else w["kind"]
        ax.set_title(f"{w['name']}: {label}\n{len(distinct)} distinct values of {v.numel()}", fontsize=7)
        ax.set_xlabel("weight value", fontsize=7)
        ax.set_ylabel("count", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def _histogram(ax, v: torch.Tensor, distinct: torch.Tensor, fmt: str | None) -> None:
    import numpy as np

    from fxp.format import Format

    if fmt is not None:  # bins aligned to the grid: no bin holds more grid points than its neighbours
        lsb = Format.parse(fmt).resolution
        lo, hi = round(float(v.min()) / lsb), round(float(v.max()) / lsb)
        step = max(1, -(-(hi - lo + 1) // 100))
        ax.hist(v.numpy(), bins=(np.arange(lo - 0.5, hi + 0.5 + step, step) * lsb), color="tab:blue",
                rwidth=0.85 if step == 1 else None)  # gaps between bars: the values are discrete
    elif len(distinct) <= 64:  # a few levels (sign, alpha * sign): one bar per level
        counts = [int((v == d).sum()) for d in distinct]
        gap = float(torch.diff(distinct).min()) if len(distinct) > 1 else 1.0
        ax.bar(distinct.numpy(), counts, width=0.6 * gap, color="tab:blue")
    else:
        ax.hist(v.numpy(), bins=101, color="tab:blue")


def accuracy_bars(accuracies: dict[str, float]) -> bytes:
    """One bar per stage of the flow (name: accuracy in [0, 1]), its value written on it."""
    fig, ax = plt.subplots(figsize=(6, 3), dpi=120)
    names = list(accuracies)
    values = [100 * accuracies[n] for n in names]
    bars = ax.barh(names, values, color=[f"C{k}" for k in range(len(names))])
    for bar, v in zip(bars, values):
        ax.text(bar.get_width() - 1, bar.get_y() + bar.get_height() / 2, f"{v:.2f} %", va="center", ha="right",
                color="white", fontsize=9)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def utilization_bars(used: dict[str, tuple[int, int]]) -> bytes:
    """Per resource (name: (used, available)) the share of the device a design takes."""
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(used)), dpi=120)
    names = list(used)
    shares = [100 * u / max(a, 1) for u, a in used.values()]
    ax.barh(names, shares, color=["C3" if s > 100 else "C0" for s in shares])
    for k, (name, (u, a)) in enumerate(used.items()):
        ax.text(min(shares[k], 100) + 1, k, f"{u:,} / {a:,}", va="center", fontsize=8)
    ax.set_xlim(0, 130)
    ax.axvline(100, color="gray", ls="--", lw=1)
    ax.invert_yaxis()
    ax.set_xlabel("share of the device (%)")
    fig.tight_layout()
    return png(fig)


def confusion(labels, predicted, classes: int) -> bytes:
    """The confusion matrix of ``predicted`` against ``labels`` (counts, true class by row)."""
    import numpy as np

    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predicted)), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > counts.max() / 2 else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted by the board")
    ax.set_ylabel("true class")
    fig.tight_layout()
    return png(fig)


def layer_bars(layers: list[dict]) -> bytes:
    """Remaining parameters per layer (``weights`` and ``kept`` of each entry), log scale, % kept on top."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(layers) + 2), 3.2), dpi=120)
    x = range(len(layers))
    ax.bar([i - 0.2 for i in x], [r["weights"] for r in layers], 0.4, label="before", color="C7")
    ax.bar([i + 0.2 for i in x], [max(r["kept"], 1) for r in layers], 0.4, label="kept", color="C0")
    for i, r in zip(x, layers, strict=True):
        ax.annotate(f"{r['kept_percent']:.1f}%", (i + 0.2, max(r["kept"], 1)), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), [r["layer"] for r in layers])
    ax.set_yscale("log")
    ax.set_ylabel("weights")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def weight_histograms_before_after(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bytes:
    """Each layer's weight histogram before and after compression (the zeros of pruned weights left out)."""
    names = list(before)
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names, strict=True):
        b = before[name].double()
        a = after.get(name, torch.zeros(0)).double()
        a = a[a != 0]
        lim = float(b.abs().max()) or 1.0
        bins = torch.linspace(-lim, lim, 81).tolist()
        ax.hist(b.tolist(), bins=bins, color="C7", alpha=0.6, label=f"before ({b.numel()})")
        ax.hist(a.tolist(), bins=bins, color="C0", alpha=0.8, label=f"after, nonzero ({a.numel()})")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("weight value", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return png(fig)


def accuracy_vs_sparsity(steps: list[dict], float_baseline: dict | None = None) -> bytes:
    """Test accuracy at each step of a compression (``sparsity``, ``test_accuracy``, ``step``)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    xs = [100 * s["sparsity"] for s in steps]
    ys = [100 * s["test_accuracy"] for s in steps]
    ax.plot(xs, ys, "-", color="C7", lw=1)
    for kind, style in (("pruned", {"marker": "v", "color": "C3"}), ("retrained", {"marker": "o", "color": "C0"})):
        pts = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if s["step"].endswith(kind)]
        if pts:
            ax.plot(*zip(*pts, strict=True), ls="none", label=kind, **style)
    ax.plot(xs[:1], ys[:1], "s", color="k", label="reference")
    if float_baseline:
        ax.axhline(100 * float_baseline["test_accuracy"], color="gray", ls="--", label="float baseline")
    ax.set_xlabel("weights pruned (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


def codebooks(before: dict[str, torch.Tensor], centroids: dict[str, torch.Tensor]) -> bytes:
    """Each shared layer's kept weights before sharing (histogram) and the trained centroids (vertical lines),
    as Deep Compression's figure 4 draws them."""
    names = list(centroids)
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names, strict=True):
        v = before[name].double()
        v = v[v != 0]
        ax.hist(v.tolist(), bins=80, color="C7", alpha=0.7)
        for c in centroids[name].double().tolist():
            ax.axvline(c, color="C3", lw=0.8)
        ax.set_title(f"{name}: {len(centroids[name])} centroids", fontsize=8)
        ax.set_xlabel("weight value", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return png(fig)


def bytes_per_stage(stages: dict[str, int]) -> bytes:
    """The network's weight bytes after each compression stage (log scale), each bar labelled with its rate
    against the first."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=120)
    names, values = list(stages), list(stages.values())
    ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
    for i, v in enumerate(values):
        ax.annotate(f"{v:,} B\n{values[0] / max(v, 1):.1f}×", (i, v), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("bytes")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return png(fig)
