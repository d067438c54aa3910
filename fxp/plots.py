"""PNG figures for reports. Each function returns PNG bytes: deterministic (no timestamps or version tags)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_bits(series: dict[str, list[tuple[int, float]]], float_acc: float | None, xlabel: str) -> bytes:
    """One line per series of (bits, accuracy in [0, 1]); a dashed line for float."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, pts in series.items():
        ax.plot([b for b, _ in pts], [100 * a for _, a in pts], "o-", label=name)
    if float_acc is not None:
        ax.axhline(100 * float_acc, color="gray", ls="--", label="float32")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png(fig)


def training_curves(metrics: dict) -> bytes:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    runs = [(metrics["mode"], metrics["epochs"])]
    if "float_baseline" in metrics:
        runs.append(("float baseline", metrics["float_baseline"]["epochs"]))
    for i, (name, hist) in enumerate(runs):
        ep, color = [h["epoch"] for h in hist], f"C{i}"
        ax1.plot(ep, [h["train_loss"] for h in hist], "o-", color=color, label=name)
        ax2.plot(ep, [100 * h["test_accuracy"] for h in hist], "o-", color=color, label=f"{name} (test)")
        ax2.plot(ep, [100 * h["train_accuracy"] for h in hist], ":", color=color, label=f"{name} (train)")
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{metrics['model']} on {metrics['dataset']}, {metrics['mode']} mode")
    fig.tight_layout()
    return png(fig)


def weight_histograms(model: nn.Module) -> bytes:
    """The distribution of every layer's weights after training, one panel per layer."""
    weights = [(n, p.detach().flatten()) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    cols = min(3, len(weights))
    rows = (len(weights) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=110, squeeze=False)
    for ax, (name, w) in zip(axes.flat, weights):
        distinct = torch.unique(w).numel()
        ax.hist(w.numpy(), bins=min(101, max(distinct, 10)), color="tab:blue")
        ax.set_title(f"{name} ({w.numel()} weights, {distinct} values)", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(weights):]:
        ax.axis("off")
    fig.tight_layout()
    return png(fig)
