"""Training in the dynamic fixed-point simulator: ``fxp train`` and ``fxp sweep``.

One recipe (SGD with momentum, cosine learning rate, seeded shuffling) trains any model of
:mod:`fxp.models` in ``float``, ``qat`` or ``fixed`` mode. Under ``torchrun`` the same code runs
data-parallel (gloo on CPU, NCCL on GPUs): each process takes a strided share of every shuffled
epoch, gradients are averaged by DistributedDataParallel, and the dynamic scales sum their overflow
counts across processes, so every process keeps the same formats and parameters.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fxp.datasets import Dataset
from fxp.errors import FxpError
from fxp.layers import Bounds, FixedPointSGD, FxConfig, named_trackers, snap_model, step_trackers
from fxp.models import BINARY_TYPES, build, load_spec
from fxp.progress import track
from fxp.resources import check_out_folder, write_atomic

# The ranges of Recipe's numbers (fxp train's and fxp sweep's options take theirs from here)
EPOCHS = Bounds(1, 100_000, whole=True)
BATCH_SIZE = Bounds(1, 1 << 20, whole=True)
LR = Bounds(0, 1e3, lo_open=True)
MOMENTUM = Bounds(0, 1, hi_open=True)
WEIGHT_DECAY = Bounds(0, 1)
LIMIT_TRAIN = Bounds(1, 1 << 31, whole=True)
MAX_SEED = (1 << 32) - 1  # numpy and torch take any seed in 0..2**32-1
SEED = Bounds(0, MAX_SEED, whole=True)
OPTIMIZERS = ("sgd", "adam")
REGULARIZER = Bounds(0, 10)  # a strength beyond 10 would drown the cross-entropy loss (about 2.3 at the start)
REGULARIZERS = ("l1", "group_in", "group_out", "tsrelu", "gate_l1", "depth_l1", "binary", "weight_range")  # Recipe's fields, fxp.compress.regularizers' terms


@dataclass
class Recipe:
    """How to train: the same for the fixed-point model and its float baseline.

    These defaults and ranges are ``fxp train``'s and ``fxp sweep``'s too (the CLI reads them from here).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    limit_train: int | None = None  # use only the first N training images (quick runs, tests)
    optimizer: str = "sgd"  # sgd (with momentum) or adam
    # regularizers towards pruning (fxp.compress.regularizers): L1 on the weights, group lasso on each
    # hidden neuron's incoming (li) and outgoing (lo) weights
    l1: float = 0.0
    group_in: float = 0.0
    group_out: float = 0.0
    # architecture learning (fxp.compress.tsrelu): either above 0 turns every ReLU into a gated tsReLU
    tsrelu: float = 0.0  # weight of the gates' w(1-w) and d(1-d)
    gate_l1: float = 0.0  # weight of the neuron gates' sum: fewer neurons
    depth_l1: float = 0.0  # weight of the layer gates' sum: fewer nonlinearities
    # binarized models: W^2 (1 - W^2) on the latent weights, which then train as they are (no
    # straight-through estimator) and are rounded to ±1 at the end
    binary: float = 0.0
    # uniform quantization (fxp compress --range-reg): each output channel's weight range (max - min)**2
    weight_range: float = 0.0

    def __post_init__(self) -> None:
        EPOCHS.check("epochs", self.epochs)
        BATCH_SIZE.check("batch_size", self.batch_size, " of images")
        LR.check("lr (the learning rate)", self.lr)
        MOMENTUM.check("momentum", self.momentum)
        WEIGHT_DECAY.check("weight_decay", self.weight_decay)
        if self.limit_train is not None:
            LIMIT_TRAIN.check("limit_train", self.limit_train, " of images (or None for all)")
        SEED.check("seed", self.seed)
        if self.optimizer not in OPTIMIZERS:
            raise FxpError(f"optimizer {self.optimizer!r} is not known; use {' or '.join(OPTIMIZERS)}")
        for name in REGULARIZERS:
            REGULARIZER.check(name, getattr(self, name))

    def regularizers(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in REGULARIZERS}

    @property
    def gated(self) -> bool:
        """Whether the model trains with tsReLU gates in place of its ReLUs."""
        return bool(self.tsrelu or self.gate_l1 or self.depth_l1)


def check_recipe(spec: dict, cfg: FxConfig, recipe: Recipe) -> None:
    """Refuse a recipe that ``cfg`` cannot train model ``spec`` with, before anything is trained."""
    binary = any(layer["type"] in BINARY_TYPES for layer in spec["layers"])  # trained as such, not in fixed point
    if recipe.binary and (not binary or cfg.mode == "float"):
        raise FxpError("the binary regularizer acts on a binarized model's latent weights; train one (e.g. "
                       "bnn_digits, sfc_bnn) in qat or fixed mode")
    if recipe.gated:
        from fxp.compress.tsrelu import with_tsrelu

        with_tsrelu(spec)  # refuses a model without ReLUs
        if binary or cfg.mode == "fixed":
            raise FxpError("tsReLU gates train in float or qat mode on a model with ReLUs (their gates are float "
                           "parameters); use --mode float or qat")
    if cfg.mode == "fixed" and not binary and recipe.optimizer != "sgd":
        raise FxpError(f"fixed mode stores parameters in fixed point with FixedPointSGD, not {recipe.optimizer}; "
                       "use optimizer sgd (Recipe(optimizer='sgd'), --optimizer sgd) or another mode")


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up (if any): gloo on CPU, NCCL where there are GPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return _dist()


def finish_distributed() -> None:
    """Wait for every process (rank 0 writes the files), then leave the group cleanly."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    model.train(was)
    return correct / max(len(x), 1)


def check_compatible(spec: dict, data: Dataset) -> None:
    if list(spec["input_shape"]) != data.input_shape:
        raise FxpError(
            f"model {spec.get('name', '?')} takes input {spec['input_shape']} but dataset {data.name} has "
            f"{data.input_shape}; pick a model made for this dataset (e.g. digits_mlp for digits, lenet5 for 28x28)"
        )


def train_model(model_spec: str | dict, data: Dataset, cfg: FxConfig, recipe: Recipe, progress: bool = True,
                label: str = "") -> tuple[nn.Module, list[dict]]:
    """Train one model from its seeded initial weights; returns it (unwrapped) and the per-epoch history."""
    spec = load_spec(model_spec)
    check_compatible(spec, data)
    check_recipe(spec, cfg, recipe)
    if recipe.gated:
        from fxp.compress.tsrelu import with_tsrelu

        spec = with_tsrelu(spec)
    model = build(spec, cfg, seed=recipe.seed)
    if cfg.mode == "fixed" and not getattr(model, "binary", False):
        snap_model(model)
    latent = [m for m in model.modules() if hasattr(m, "latent")] if recipe.binary else []
    for m in latent:
        m.latent = True
    history = fit(model, data, cfg, recipe, progress, label)
    if latent:  # round to ±1: the signs, as the export and the hardware take them
        for m in latent:
            m.latent = False
        history[-1]["test_accuracy_latent"] = history[-1]["test_accuracy"]
        history[-1]["test_accuracy"] = evaluate(model, data.x_test, data.y_test)
    return model, history


def fit(model: nn.Module, data: Dataset, cfg: FxConfig, recipe: Recipe, progress: bool = True, label: str = "",
        pruner=None) -> list[dict]:
    """Train ``model`` in place with ``recipe`` (fresh optimizer and schedule); the per-epoch history.

    ``pruner`` (:class:`fxp.compress.prune.Pruner`) keeps its masks on the weights throughout; the
    recipe's regularizers (:mod:`fxp.compress.regularizers`) are added to the loss.
    """
    from fxp.compress.regularizers import penalty

    rank, world = _dist()
    model.train()
    fixed = cfg.mode == "fixed" and not getattr(model, "binary", False)
    gen = torch.Generator().manual_seed(recipe.seed + 1)  # stochastic rounding of updates
    if fixed:
        opt = FixedPointSGD(model, recipe.lr, recipe.momentum, recipe.weight_decay, generator=gen)
    elif recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    post_steps = [m.post_step for m in model.modules() if hasattr(m, "post_step")]
    if pruner is not None:
        post_steps.append(pruner.after_step)
    strengths = recipe.regularizers()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    x_all, y_all = data.x_train, data.y_train
    if recipe.limit_train:
        x_all, y_all = x_all[: recipe.limit_train], y_all[: recipe.limit_train]
    steps_per_epoch = math.ceil(len(x_all) / (recipe.batch_size * world))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(recipe.seed + 2)
    history = []
    epochs = track(range(recipe.epochs), f"{label or cfg.mode} epochs", disable=not progress or rank != 0)
    for epoch in epochs:
        t0 = time.perf_counter()
        if pruner is not None:
            pruner.start_epoch(epoch)
        perm = torch.randperm(len(x_all), generator=shuffle)[rank::world]
        net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        batches = track(range(0, len(perm), recipe.batch_size), "batches", leave=False,
                        disable=not progress or rank != 0)
        for i in batches:
            idx = perm[i : i + recipe.batch_size]
            xb, yb = x_all[idx], y_all[idx]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = F.cross_entropy(out, yb)
            reg = penalty(model, strengths)
            total = loss if reg is None else loss + reg
            if not math.isfinite(total.item()):
                raise FxpError(f"training diverged (loss {total.item()}) in epoch {epoch + 1}; lower the learning "
                               "rate (Recipe.lr) or the regularizers, or widen the formats")
            total.backward()
            opt.step()
            for f in post_steps:  # e.g. clip the latent weights of binary layers, re-apply pruning masks
                f()
            sched.step()
            step_trackers(model)
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_accuracy": evaluate(model, data.x_test, data.y_test),
            "seconds": time.perf_counter() - t0,
        }
        if pruner is not None:
            rec["sparsity"] = pruner.history[-1]
        history.append(rec)
        epochs.set_postfix(loss=f"{rec['train_loss']:.3f}", test=f"{100 * rec['test_accuracy']:.2f}%")
    return history


def formats_record(model: nn.Module) -> dict:
    out = {}
    for name, t in named_trackers(model).items():
        if t.frac_bits is None:
            continue
        out[name] = {"format": str(t.fmt), "word_bits": t.word_bits, "frac_bits": t.frac_bits,
                     "history": t.history}
    return out


def _ranks_agree(model: nn.Module) -> bool:
    """Every process holds the same parameters and binary points (compared exactly, via a gather)."""
    mine = torch.cat([p.detach().double().flatten() for p in model.parameters()] +
                     [torch.tensor([float(t.frac_bits) for t in named_trackers(model).values() if t.frac_bits is not None],
                                   dtype=torch.float64)])
    everyone = [torch.empty_like(mine) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(everyone, mine)
    return all(torch.equal(everyone[0], o) for o in everyone[1:])


def save_checkpoint(path: Path, model: nn.Module, cfg: FxConfig, recipe: Recipe) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"spec": model.spec, "config": cfg.to_dict(), "recipe": asdict(recipe),
                "state_dict": model.state_dict()}, buf)
    write_atomic(path, buf.getvalue())


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def load_checkpoint(path: str | Path, exact: bool | None = None) -> nn.Module:
    """Rebuild a trained model (formats and scales included) from ``checkpoint.pt``.

    ``exact=True`` evaluates with float64 accumulation, which makes a ``qat`` model trained with
    ``nearest_up`` rounding agree with its integer export on every output.
    """
    path = Path(path)
    try:
        # weights_only: tensors and plain containers only; any other pickled object could run code on load
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():  # torch refused to import a class or function the pickle names
            raise FxpError(f"refusing checkpoint {path}: it is not tensors and plain data alone (other objects "
                           "could run code when loaded); give a checkpoint.pt written by fxp train") from None
        raise FxpError(f"cannot load checkpoint {path} (not a checkpoint: {_first_line(e)}); give a checkpoint.pt "
                       "written by fxp train") from None
    except Exception as e:  # a damaged or foreign file fails in many ways inside torch.load
        raise FxpError(f"cannot load checkpoint {path} ({type(e).__name__}: {_first_line(e)}); "
                       "give a checkpoint.pt written by fxp train") from None
    try:
        cfg = FxConfig.from_dict(ck["config"])
        if exact is not None:
            cfg = replace(cfg, exact=exact)
        model = build(ck["spec"], cfg, seed=0)
        model.load_state_dict(ck["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, ValueError) as e:
        if isinstance(e, FxpError):
            raise
        raise FxpError(f"cannot load checkpoint {path} ({type(e).__name__}: {_first_line(e)}); "
                       "give a checkpoint.pt written by fxp train") from None
    model.eval()
    model.config = cfg
    return model


def run_train(model: str, data: Dataset, cfg: FxConfig, recipe: Recipe, out: str | Path, baseline: bool = False,
              progress: bool = True, force: bool = False) -> dict:
    """``fxp train``: train, optionally the float baseline too, and write checkpoint, metrics and plots."""
    out = Path(out)
    spec = load_spec(model)
    check_compatible(spec, data)
    check_recipe(spec, cfg, recipe)
    check_out_folder(out, force, "metrics.json", "a training run")
    rank, world = _dist()
    t0 = time.perf_counter()
    net, hist = train_model(spec, data, cfg, recipe, progress, label=cfg.mode)
    metrics = {
        "model": spec.get("name"),
        "dataset": data.name,
        "dataset_source": data.source or data.name,  # what fxp.datasets.load takes, from any folder
        "mode": cfg.mode,
        "config": cfg.to_dict(),
        "recipe": asdict(recipe),
        "world_size": world,
        "test_accuracy": hist[-1]["test_accuracy"],
        "epochs": hist,
        "seconds": time.perf_counter() - t0,
        "formats": formats_record(net),
    }
    if world > 1:
        metrics["ranks_agree"] = _ranks_agree(net)
        if not metrics["ranks_agree"]:
            raise FxpError("processes ended with different parameters or formats; report this as a bug")
    if baseline and cfg.mode != "float":
        _, bhist = train_model(spec, data, replace(cfg, mode="float"), recipe, progress, label="float baseline")
        metrics["float_baseline"] = {"test_accuracy": bhist[-1]["test_accuracy"], "epochs": bhist}
        metrics["accuracy_gap_points"] = 100 * (bhist[-1]["test_accuracy"] - hist[-1]["test_accuracy"])
    if rank == 0:
        from fxp.plots import training_curves, weight_histograms

        save_checkpoint(out / "checkpoint.pt", net, cfg, recipe)
        write_atomic(out / "curves.png", training_curves(metrics))
        write_atomic(out / "weights.png", weight_histograms(net))
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_folder(path: str | Path) -> Path:
    """The run folder of ``fxp train`` that ``path`` names: the folder itself, or the folder of its checkpoint.pt."""
    path = Path(path)
    return path.parent if path.name == "checkpoint.pt" and path.is_file() else path


def read_run_metrics(run: str | Path) -> dict:
    """``metrics.json`` of a run of ``fxp train`` (its folder or its checkpoint.pt), after checking that the
    folder holds one."""
    run = run_folder(run)
    hint = "give the folder that fxp train (or run_train) wrote"
    if not run.exists():
        raise FxpError(f"run folder {run} does not exist; {hint}")
    if not run.is_dir():
        raise FxpError(f"{run} is a file, not a run folder; {hint}")
    for name in ("checkpoint.pt", "metrics.json"):
        if not (run / name).is_file():
            raise FxpError(f"{run} is not a training run ({name} is missing); {hint}")
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FxpError(f"{run / 'metrics.json'} cannot be read ({type(e).__name__}: {e}); rerun fxp train") from None
    missing = [k for k in ("dataset", "mode", "test_accuracy") if not isinstance(metrics, dict) or k not in metrics]
    if missing:
        raise FxpError(f"{run / 'metrics.json'} lacks {', '.join(missing)}; it was not written by fxp train, "
                       "rerun it")
    return metrics


def run_dataset(metrics: dict) -> str:
    """The dataset a run of ``fxp train`` trained on (from its :func:`read_run_metrics`), as
    :func:`fxp.datasets.load` takes it."""
    return str(metrics.get("dataset_source") or metrics["dataset"])
