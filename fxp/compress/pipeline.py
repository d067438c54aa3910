"""``fxp compress``: a trained run in, a smaller run out (pruning, neuron removal, retraining) with a report.

The steps, each optional:

1. **neurons** (``neuron_threshold``): kill every hidden neuron whose incoming or outgoing weight norm is
   at most the threshold and remove the dead ones from the model (:mod:`fxp.compress.neurons`); train
   the run with the group-lasso regularizers first (``fxp train --group-in/--group-out``) so that whole
   neurons reach zero.
2. **weights** in ``stages`` rounds of prune, then retrain (Han et al.'s iterative pruning): with a
   ``sparsity`` target the rounds keep a geometric share (a 92 % target in three rounds keeps 43 %, 19 %,
   8 %); with a ``quality`` the threshold rule is applied each round. ``dynamic`` recomputes the masks
   at every retraining epoch on Zhu and Gupta's gradual schedule instead of once per round.

The output is a run like ``fxp train``'s (``checkpoint.pt``, ``metrics.json``: ``fxp export`` and the
rest take it), plus ``report.md``/``report.json`` (per layer: weights, % kept, neurons kept, the sparse
storage's index bits and bytes; the summary against the reference run) and PNGs: remaining weights per
layer, weight histograms, accuracy against sparsity, bytes per stage, and with sharing the codebooks
over the weights (``weights.fxpz`` holds the shared weights themselves). Before the weight rounds, it can
also learn and read tsReLU gates (``architecture``) and remove dead neurons; after them, share the
weights (``share_bits``; ``share_rounds`` times train → cluster → share) and Huffman-code them (``huffman``), or put them on a ``uniform_bits``-bit uniform grid
(:mod:`fxp.compress.uniform`) and retrain with the grid in the forward pass (quantization-aware training,
straight-through), optionally with the range regularizer (``range_reg``) pulling each channel's max and min
together.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from fxp.compress import neurons as neuron_ops
from fxp.compress.architecture import learned_architecture
from fxp.compress.packed import save_packed
from fxp.compress.prune import (
    QUALITY,
    SCOPES,
    SPARSITY,
    Pruner,
    gradual,
    kept,
    layer_stats,
    per_layer,
    prunable,
    sparsity_masks,
    threshold_masks,
)
from fxp.compress.prune import sparsity as model_sparsity
from fxp.compress.sharing import INITS_1D as SHARE_INITS
from fxp.compress.sharing import MAX_SHARE_BITS, Sharer, share_weights
from fxp.compress.storage import layer_storage
from fxp.compress.tsrelu import gated, with_tsrelu
from fxp.compress.uniform import SCHEMES as UNIFORM_SCHEMES
from fxp.compress.uniform import UniformQAT, uniform_bytes
from fxp.errors import FxpError
from fxp.layers import Bounds
from fxp.resources import check_out_folder, render, write_atomic
from fxp.train import (
    LR,
    REGULARIZER,
    SEED,
    WEIGHT_DECAY,
    Recipe,
    evaluate,
    fit,
    formats_record,
    load_checkpoint,
    read_run_metrics,
    run_dataset,
    run_folder,
    save_checkpoint,
)

STAGES = Bounds(1, 100, whole=True)
RETRAIN_EPOCHS = Bounds(0, 100_000, whole=True)
NEURON_THRESHOLD = Bounds(0, 1e3)
GATE_EPOCHS = Bounds(1, 100_000, whole=True)
SHARE_BITS = Bounds(1, MAX_SHARE_BITS, whole=True)
SHARE_ROUNDS = Bounds(1, 100, whole=True)
SHARE_FREE_EPOCHS = Bounds(1, 100_000, whole=True)
SHARE_FREE_EPOCHS_DEFAULT = 1
SHARE_RESTARTS = ("codebook", "init")  # where a later round's k-means starts: the last codebook, or share_init
UNIFORM_BITS = Bounds(1, 8, whole=True)


@dataclass
class PruneOptions:
    """What ``fxp compress`` does to a run (see the module docstring); every field is optional.

    ``sparsity`` / ``quality``: a number for every layer, or ``{layer: value}``; at most one of the two.
    ``scope``: ``layer`` or ``global`` (one magnitude ranking across layers; sparsity only).
    ``lr``: the retraining learning rate (default: a tenth of the run's, as Han et al. retrain).
    ``weight_decay``: while retraining and learning gates (default: the run's).
    ``share_bits``: k-means weight sharing with ``2**bits`` codes a layer (a number, or per layer), its
    centroids then trained ``share_epochs``; ``huffman``: report the Huffman-coded storage too.
    ``share_rounds``: train → cluster → share that many times: each round after the first releases the ties,
    trains the weights freely ``share_free_epochs`` (default 1; the pruned ones stay 0), clusters them again
    from the last codebook (``share_restart`` ``codebook``, the default) or from ``share_init`` (``init``),
    and trains the centroids ``share_epochs``. One round is the single clustering.
    ``seed``: the retraining's seed (default: the run's).
    ``l1``, ``group_in``, ``group_out``: regularizers during retraining.
    ``uniform_bits``: quantization-aware retraining on a uniform grid of that many bits (1..8; symmetric 2..8),
    ``uniform_scheme`` ``affine`` or ``symmetric``, per output channel or (``uniform_per_channel`` False) per
    tensor; ``range_reg``: the strength of the range regularizer (:func:`fxp.compress.regularizers.weight_range`).
    """

    sparsity: float | dict[str, float] | None = None
    quality: float | dict[str, float] | None = None
    scope: str = "layer"
    stages: int = 1
    dynamic: bool = False
    retrain_epochs: int = 2
    lr: float | None = None
    weight_decay: float | None = None
    neuron_threshold: float | None = None
    l1: float = 0.0
    group_in: float = 0.0
    group_out: float = 0.0
    architecture: bool = False
    share_bits: int | dict[str, int] | None = None
    share_init: str = "linear"
    share_epochs: int = 2
    share_rounds: int = 1
    share_free_epochs: int | None = None
    share_restart: str | None = None
    huffman: bool = False
    tsrelu: float = 0.0
    gate_l1: float = 0.0
    depth_l1: float = 0.0
    gate_epochs: int = 3
    uniform_bits: int | None = None
    uniform_scheme: str = "affine"
    uniform_per_channel: bool = True
    range_reg: float = 0.0
    seed: int | None = None

    def check(self) -> None:
        """Refuse what cannot be done before a model is loaded (layer names are checked against the model)."""
        if self.sparsity is not None and self.quality is not None:
            raise FxpError("give a sparsity target or a threshold quality, not both")
        if (self.sparsity is None and self.quality is None and self.neuron_threshold is None and not self.architecture
                and self.share_bits is None and self.uniform_bits is None):
            raise FxpError("nothing to do: give a sparsity (--prune), a threshold quality (--quality), a neuron "
                           "threshold (--neurons), --architecture, --share-bits or --uniform")
        if self.uniform_bits is not None:
            UNIFORM_BITS.check("uniform bits", self.uniform_bits)
            if self.share_bits is not None:
                raise FxpError("k-means sharing and uniform quantization each put the weights on their own grid; "
                               "give --share-bits or --uniform, not both")
            if self.stages > 1 or self.dynamic:
                # each round would restart from snapped weights (progress under a grid step lost) and take its
                # masks from them (weights within half a step of 0 pruned for good)
                raise FxpError("uniform QAT keeps one set of float weights through its retraining; prune in one "
                               "round (no --stages, no --dynamic), or prune first and compress that run with --uniform")
        if self.uniform_scheme not in UNIFORM_SCHEMES:
            raise FxpError(f"uniform scheme {self.uniform_scheme!r} is not known; use {' or '.join(UNIFORM_SCHEMES)}")
        if self.uniform_bits == 1 and self.uniform_scheme == "symmetric":
            raise FxpError("a symmetric 1-bit grid holds only 0 (codes -(2**(b-1) - 1)..2**(b-1) - 1); give 2 or "
                           "more bits, or the affine scheme")
        if self.share_init not in SHARE_INITS:
            raise FxpError(f"share_init {self.share_init!r} is not known; use {', '.join(SHARE_INITS)}")
        RETRAIN_EPOCHS.check("share_epochs", self.share_epochs)
        if self.huffman and self.share_bits is None:
            raise FxpError("Huffman coding stores the shared weights' codes; give --share-bits too")
        SHARE_ROUNDS.check("share_rounds", self.share_rounds)
        if self.share_rounds > 1 and self.share_bits is None:
            raise FxpError("sharing rounds cluster the weights again and again; give --share-bits too")
        if self.share_free_epochs is not None:
            SHARE_FREE_EPOCHS.check("share_free_epochs", self.share_free_epochs)
        if self.share_restart is not None and self.share_restart not in SHARE_RESTARTS:
            raise FxpError(f"share_restart {self.share_restart!r} is not known; use {' or '.join(SHARE_RESTARTS)}")
        if self.share_rounds == 1 and (self.share_free_epochs is not None or self.share_restart is not None):
            raise FxpError("--share-free-epochs and --share-restart act between sharing rounds; give --share-rounds "
                           "2 or more")
        if self.seed is not None:
            SEED.check("seed", self.seed)
        if isinstance(self.share_bits, int):
            SHARE_BITS.check("share bits", self.share_bits)
        if self.scope not in SCOPES:
            raise FxpError(f"scope {self.scope!r} is not known; use {' or '.join(SCOPES)}")
        if self.scope == "global" and not isinstance(self.sparsity, float | int):
            raise FxpError("a global scope ranks all layers' weights against one sparsity; give --prune with one "
                           "number")
        for what, value in (("--prune", self.sparsity), ("--quality", self.quality), ("--share-bits", self.share_bits)):
            if isinstance(value, dict) and not value:
                raise FxpError(f"{what} names no layer; give one number or layer=value pairs")
            if isinstance(value, dict) and self.architecture:
                raise FxpError(f"{what} per layer names layers that --architecture may merge and renumber; give one "
                               "number, or read the architecture first and compress that run")
        if self.dynamic and self.quality is not None:
            raise FxpError("dynamic pruning ramps the sparsity towards a target; give --prune with --dynamic (the "
                           "threshold rule, re-applied each epoch, would prune on and on)")
        STAGES.check("stages", self.stages)
        RETRAIN_EPOCHS.check("retrain_epochs", self.retrain_epochs)
        if self.dynamic and self.retrain_epochs == 0:
            raise FxpError("dynamic pruning recomputes the masks while retraining; give retrain epochs (at least 1)")
        if self.lr is not None:
            LR.check("lr (the retraining learning rate)", self.lr)
        if self.weight_decay is not None:
            WEIGHT_DECAY.check("weight_decay", self.weight_decay)
        if self.neuron_threshold is not None:
            NEURON_THRESHOLD.check("neuron threshold", self.neuron_threshold)
        for name in ("l1", "group_in", "group_out", "tsrelu", "gate_l1", "depth_l1", "range_reg"):
            REGULARIZER.check(name, getattr(self, name))
        GATE_EPOCHS.check("gate_epochs", self.gate_epochs)
        if (self.tsrelu or self.gate_l1 or self.depth_l1) and not self.architecture:
            raise FxpError("tsReLU gates are learned to read an architecture from them; add --architecture")


def _stage_targets(model, opts: PruneOptions, stage: int) -> dict[str, float]:
    """Per layer, the sparsity round ``stage`` (0-based) of ``opts.stages`` reaches: a geometric share kept."""
    final = per_layer(model, opts.sparsity, SPARSITY, "sparsity")
    return {n: 1 - (1 - s) ** ((stage + 1) / opts.stages) for n, s in final.items()}


def _masks(model, opts: PruneOptions, targets: dict[str, float] | None):
    if opts.quality is not None:
        return threshold_masks(model, opts.quality)
    if opts.scope == "global":
        return sparsity_masks(model, next(iter(targets.values())), "global")
    return sparsity_masks(model, targets)


def _schedule(model, opts: PruneOptions, targets: dict[str, float] | None):
    """Dynamic pruning: the masks for each retraining epoch, rising towards this round's targets."""
    if not opts.dynamic:
        return None
    start = {r["layer"]: 1 - r["nonzero"] / r["weights"] for r in layer_stats(model)}
    ramps = {n: gradual(t, opts.retrain_epochs, min(start[n], t)) for n, t in targets.items()}

    def at(epoch: int):
        now = {n: ramp(epoch) for n, ramp in ramps.items()}
        if opts.scope == "global":
            return sparsity_masks(model, next(iter(now.values())), "global")
        return sparsity_masks(model, now)
    return at


def storage(model, value_bits: int, shared: dict | None = None, share_bits: dict | None = None) -> list[dict]:
    """Per prunable layer: its bytes after each stage it went through (:func:`fxp.compress.storage.layer_storage`)."""
    shared, share_bits = shared or {}, share_bits or {}
    return [{"layer": name, **layer_storage(m.weight, value_bits, shared.get(name), share_bits.get(name))}
            for name, m in prunable(model).items()]


def _value_bits(model) -> int:
    """The width the run stores a weight at: its weight tracker's word (32 in float mode)."""
    return next(iter(prunable(model).values())).ptrack["weight"].word_bits


def compress(run: str | Path, out: str | Path, opts: PruneOptions, progress: bool = True,
             force: bool = False) -> dict:
    """Compress the run of ``fxp train`` in ``run`` into a new run in ``out`` (see the module docstring)."""
    from fxp.datasets import load

    opts.check()
    run, out = run_folder(run), Path(out)
    metrics = read_run_metrics(run)
    if out.resolve() == run.resolve():
        raise FxpError(f"{out} is the run being compressed; give another output folder")
    check_out_folder(out, force, "metrics.json", "a run")
    model = load_checkpoint(run / "checkpoint.pt")
    cfg = model.config
    if getattr(model, "binary", False):
        prunable(model)  # refuses in one line
    if opts.sparsity is not None:
        per_layer(model, opts.sparsity, SPARSITY, "sparsity")
    if opts.quality is not None:
        per_layer(model, opts.quality, QUALITY, "quality")
    if opts.neuron_threshold is not None:
        neuron_ops.links(model)  # refuses a model whose neurons cannot be removed, before any training
    if opts.share_bits is not None:
        bits = per_layer(model, opts.share_bits, SHARE_BITS, "share bits")
        if opts.sparsity is None and opts.quality is None and opts.neuron_threshold is None and not opts.architecture:
            _centroids(model, bits)  # the weights kept are the run's: refuse too many centroids before training
    learn_gates = bool(opts.tsrelu or opts.gate_l1 or opts.depth_l1)
    if gated(model) and not opts.architecture:
        raise FxpError(f"run {run} has tsReLU gates; give --architecture to read them")
    if opts.architecture and not gated(model) and not learn_gates:
        raise FxpError(f"run {run} has no tsReLU gates to read; learn them here (--tsrelu, --gate-l1, --depth-l1) "
                       "or train the run with them (fxp train --tsrelu)")
    if gated(model) and learn_gates:
        raise FxpError(f"run {run} has learned its tsReLU gates already; leave out --tsrelu, --gate-l1 and "
                       "--depth-l1")
    if learn_gates:
        with_tsrelu(model.spec)  # refuses a model without ReLUs, before any data is loaded
        if cfg.mode == "fixed":
            raise FxpError("tsReLU gates are float parameters, which fixed mode does not train; learn them on a "
                           "float or qat run")
    if opts.uniform_bits is not None and cfg.mode != "float":
        raise FxpError(f"uniform quantization-aware training fine-tunes a float run; run {run} is {cfg.mode} mode, "
                       "whose power-of-two weight formats would round the uniform grid again: train with --mode float")
    if opts.share_bits is not None and cfg.mode == "fixed":
        raise FxpError("shared centroids are means, off a fixed-mode run's weight grid; share the weights of a float "
                       "or qat run")
    data = load(run_dataset(metrics))
    try:
        base = Recipe(**metrics["recipe"])
    except (KeyError, TypeError) as e:
        raise FxpError(f"{run / 'metrics.json'} holds no recipe fxp train wrote ({type(e).__name__}: {e}); rerun "
                       "fxp train") from None
    if opts.architecture:  # the gates are read: the plain model retrains without their penalties
        base = replace(base, tsrelu=0.0, gate_l1=0.0, depth_l1=0.0)
    recipe = replace(base, epochs=max(opts.retrain_epochs, 1), lr=opts.lr or base.lr / 10, l1=opts.l1,
                     seed=base.seed if opts.seed is None else opts.seed,
                     group_in=opts.group_in, group_out=opts.group_out, weight_range=opts.range_reg,
                     weight_decay=base.weight_decay if opts.weight_decay is None else opts.weight_decay)
    t0 = time.perf_counter()
    reference = evaluate(model, data.x_test, data.y_test)
    before = {"stats": layer_stats(model), "storage": storage(model, _value_bits(model)), "shapes": _shapes(model),
              "weights": {n: m.weight.detach().flatten().clone() for n, m in prunable(model).items()},
              "ranges": weight_ranges(model)}
    steps, history = [{"step": "reference", "sparsity": model_sparsity(model), "test_accuracy": reference}], []
    neurons, learned = None, None
    if learn_gates:
        model = _add_gates(model)
        # the gates are new parameters: they learn at the run's own rate, not the tenth retraining takes
        gate_recipe = replace(recipe, epochs=opts.gate_epochs, lr=base.lr, tsrelu=opts.tsrelu, gate_l1=opts.gate_l1,
                              depth_l1=opts.depth_l1)
        history += [{**h, "round": 0} for h in fit(model, data, cfg, gate_recipe, progress, label="tsReLU gates")]
        steps.append({"step": "tsReLU gates learned", "sparsity": model_sparsity(model),
                      "test_accuracy": evaluate(model, data.x_test, data.y_test)})
    if opts.architecture:
        model, gates, merges, renamed = learned_architecture(model)
        learned = {"gates": gates, "merged": merges, "renamed": renamed, "layers": _shapes(model)}
        steps.append({"step": "architecture read from the gates", "sparsity": model_sparsity(model),
                      "test_accuracy": evaluate(model, data.x_test, data.y_test)})
    if opts.neuron_threshold is not None:
        neuron_ops.zero_weak(model, opts.neuron_threshold)
        model, neurons = neuron_ops.remove_dead(model)
        steps.append({"step": "neurons removed", "sparsity": model_sparsity(model),
                      "test_accuracy": evaluate(model, data.x_test, data.y_test)})
    rounds = opts.stages if (opts.sparsity is not None or opts.quality is not None) else 0
    if rounds == 0 and (opts.retrain_epochs or opts.uniform_bits is not None):
        rounds = 1  # no weight pruning (neurons, architecture, sharing or uniform alone): once, zeros held
    for stage in range(rounds):
        targets = _stage_targets(model, opts, stage) if opts.sparsity is not None else None
        pruning = opts.sparsity is not None or opts.quality is not None
        masks = _masks(model, opts, targets) if pruning and not opts.dynamic else kept(model)
        pruner = Pruner(model, masks, _schedule(model, opts, targets) if pruning else None)
        label = f"round {stage + 1}/{rounds}"
        if pruning and not opts.dynamic:
            steps.append({"step": f"{label}: pruned", "sparsity": model_sparsity(model),
                          "test_accuracy": evaluate(model, data.x_test, data.y_test)})
        if opts.uniform_bits is not None:  # the weights on their grid from here on, in every forward pass
            pruner = UniformQAT(model, pruner, opts.uniform_bits, opts.uniform_scheme, opts.uniform_per_channel)
            steps.append({"step": f"{label}: uniform {opts.uniform_bits}-bit {opts.uniform_scheme} (no retraining)",
                          "sparsity": model_sparsity(model), "test_accuracy": evaluate(model, data.x_test, data.y_test)})
        if opts.retrain_epochs:
            hist = fit(model, data, cfg, recipe, progress, label=f"retrain {label}", pruner=pruner)
            history += [{**h, "round": stage + 1} for h in hist]
            steps.append({"step": f"{label}: retrained", "sparsity": model_sparsity(model),
                          "test_accuracy": hist[-1]["test_accuracy"]})
        pruner.remove()
    shared, share_bits, unshared, share_rounds = {}, {}, {}, None
    if opts.share_bits is not None:
        shared, share_bits, unshared, share_rounds = _share(model, data, cfg, recipe, opts, steps, history, progress)
    model.eval()
    accuracy = evaluate(model, data.x_test, data.y_test)
    after = {"stats": layer_stats(model), "storage": storage(model, _value_bits(model), shared, share_bits)}
    renamed = learned["renamed"] if learned else None
    merged = learned["merged"] if learned else []
    uniform = None if opts.uniform_bits is None else _uniform_record(model, opts, before, steps, renamed, accuracy)
    record = _record(metrics, run, opts, reference, accuracy, before, after, neurons, steps, renamed, merged,
                     uniform_total=uniform and uniform["bytes"])
    if uniform is not None:
        record["uniform"] = uniform
    if learned is not None:
        record["architecture"] = {**learned, "before": before["shapes"]}
    if share_rounds is not None:
        record["share_rounds"] = share_rounds
    new_metrics = {**{k: metrics[k] for k in ("model", "dataset", "dataset_source", "mode", "config")
                      if k in metrics},
                   "recipe": asdict(recipe), "world_size": 1, "test_accuracy": accuracy, "epochs": history,
                   "seconds": time.perf_counter() - t0, "formats": formats_record(model),
                   "compressed_from": str(run), "compression": record["summary"]}
    if "float_baseline" in metrics:
        new_metrics["float_baseline"] = metrics["float_baseline"]
    if opts.uniform_bits is not None:  # fxp export reads it: the weights' codes at these bits and scheme
        new_metrics["uniform"] = {k: record["uniform"][k] for k in ("bits", "scheme", "per_channel")}
    from fxp.plots import (
        accuracy_vs_bits,
        accuracy_vs_sparsity,
        bytes_per_stage,
        codebooks,
        layer_bars,
        weight_histograms_before_after,
    )

    save_checkpoint(out / "checkpoint.pt", model, cfg, recipe)
    if shared:
        save_packed(out / "weights.fxpz", {n: m.weight.detach() for n, m in prunable(model).items()}, shared)
    write_atomic(out / "params.png", layer_bars(record["layers"]))
    now = {n: m.weight.detach().flatten() for n, m in prunable(model).items()}
    now = {old: now[renamed[old]] for old in before["weights"] if renamed[old]} if renamed else now
    write_atomic(out / "weights.png", weight_histograms_before_after(before["weights"], now))
    write_atomic(out / "accuracy_vs_sparsity.png", accuracy_vs_sparsity(steps, metrics.get("float_baseline")))
    labels = {"float32_bytes": "float32", "dense_bytes": "dense", "sparse_bytes": "pruned",
              "uniform_bytes": "uniform", "shared_bytes": "shared", "huffman_bytes": "Huffman"}
    write_atomic(out / "bytes.png", bytes_per_stage({labels[k]: record["summary"][k] for k in labels
                                                      if k in record["summary"]}))
    if shared:
        write_atomic(out / "codebooks.png", codebooks(unshared, {n: s.codebook for n, s in shared.items()}))
        write_atomic(out / "accuracy_vs_bits.png", accuracy_vs_bits(
            {"this compression": _bits_and_accuracy(record["summary"], steps)},
            (metrics.get("float_baseline") or {}).get("test_accuracy"), "stored bits per weight"))
    write_atomic(out / "report.json", json.dumps(record, indent=2) + "\n")
    write_atomic(out / "report.md", render("compress_report.md.j2", **record))
    write_atomic(out / "metrics.json", json.dumps(new_metrics, indent=2) + "\n")  # last: marks the run complete
    return record


def _share(model, data, cfg, recipe, opts, steps, history, progress) -> tuple[dict, dict, dict, list[dict]]:
    """Share every layer's kept weights among its centroids, then train the centroids (:class:`Sharer`), in
    ``opts.share_rounds`` rounds (each after the first: the ties released, the weights trained freely with
    their zeros held, clustered and shared again); the shared layers, their bits, their weights before
    sharing, and per round its epochs and accuracies."""
    bits = per_layer(model, opts.share_bits, SHARE_BITS, "share bits")
    layers = prunable(model)
    centroids = _centroids(model, bits)
    unshared = {name: layers[name].weight.detach().flatten().clone() for name in centroids}
    zeros = kept(model)  # the pruned positions of every layer, held through every round
    free_epochs = opts.share_free_epochs or SHARE_FREE_EPOCHS_DEFAULT
    restart = opts.share_restart or SHARE_RESTARTS[0]
    shared, rounds = {}, []
    for r in range(1, opts.share_rounds + 1):
        tag = "" if opts.share_rounds == 1 else f"sharing round {r}/{opts.share_rounds}: "
        record = {"round": r, "free_epochs": 0 if r == 1 else free_epochs, "share_epochs": opts.share_epochs}
        if r > 1:
            pruner = Pruner(model, zeros)
            hist = fit(model, data, cfg, replace(recipe, epochs=free_epochs), progress, label=f"free {r}",
                       pruner=pruner)
            pruner.remove()
            history += [{**h, "round": f"free {r}"} for h in hist]
            record["free_accuracy"] = hist[-1]["test_accuracy"]
            steps.append({"step": f"{tag}weights trained freely", "sparsity": model_sparsity(model),
                          "test_accuracy": record["free_accuracy"]})
        for name, k in centroids.items():
            w = layers[name].weight.detach()
            init = shared[name].codebook if r > 1 and restart == "codebook" else opts.share_init
            shared[name] = share_weights(w, k, mask=zeros[name], init=init, seed=recipe.seed)
        sharer = Sharer(model, shared)
        record["shared_accuracy"] = evaluate(model, data.x_test, data.y_test)
        steps.append({"step": f"{tag}weights shared (k-means)", "sparsity": model_sparsity(model),
                      "test_accuracy": record["shared_accuracy"]})
        if opts.share_epochs:
            hist = fit(model, data, cfg, replace(recipe, epochs=opts.share_epochs), progress,
                       label="centroids" if r == 1 else f"centroids {r}", pruner=sharer)
            history += [{**h, "round": "share" if opts.share_rounds == 1 else f"share {r}"} for h in hist]
            record["trained_accuracy"] = hist[-1]["test_accuracy"]
            steps.append({"step": f"{tag}centroids trained", "sparsity": model_sparsity(model),
                          "test_accuracy": record["trained_accuracy"]})
        sharer.remove()
        shared = sharer.shared
        rounds.append(record)
    return shared, bits, unshared, rounds


def _centroids(model, bits: dict[str, int]) -> dict[str, int]:
    """The centroids of each layer shared with ``bits`` codes: ``2**bits``, one fewer in a sparse layer, where
    code 0 is zero (fxp.compress.storage). A layer keeping fewer weights than that is refused: every weight
    its own centroid shares nothing, and the codes would cost more than the values."""
    out = {}
    for name, m in prunable(model).items():
        if name not in bits:
            continue
        kept, dense = int((m.weight.detach() != 0).sum()), bool((m.weight.detach() != 0).all())
        k = (1 << bits[name]) - (0 if dense else 1)
        if k > kept:
            most = (kept + (0 if dense else 1)).bit_length() - 1
            fix = f"give {name} at most {most} bits or leave it out" if most >= 1 else f"leave {name} out"
            raise FxpError(f"more clusters than weights: --share-bits {bits[name]} gives layer {name} {k} centroids "
                           f"for its {kept} kept weights; {fix} (--share-bits {name}=B,...)")
        out[name] = k
    return out


def _bits_and_accuracy(summary: dict, steps: list[dict]) -> list[tuple[float, float]]:
    """(stored bits per weight, test accuracy) after each stage: the reference dense, the pruned model as
    sparse rows, shared, and (the same weights) Huffman-coded."""
    per_weight = 8 / summary["weights"]
    shared_at = next(i for i, s in enumerate(steps) if "weights shared" in s["step"])
    points = [(summary["dense_bytes"] * per_weight, steps[0]["test_accuracy"]),
              (summary["sparse_bytes"] * per_weight, steps[shared_at - 1]["test_accuracy"]),
              (summary["shared_bytes"] * per_weight, steps[-1]["test_accuracy"])]
    if "huffman_bytes" in summary:
        points.append((summary["huffman_bytes"] * per_weight, steps[-1]["test_accuracy"]))
    return points


def weight_ranges(model) -> dict[str, dict]:
    """Per prunable layer: its weights' min and max, and the mean and largest of its output channels' ranges
    (``max(w, 0) - min(w, 0)``: what the range regularizer pulls together and a uniform grid divides)."""
    from fxp.compress.regularizers import channel_ranges

    out = {}
    for n, m in prunable(model).items():
        w = m.weight.detach()
        r = channel_ranges(w)
        out[n] = {"min": float(w.min()), "max": float(w.max()), "channel_range_mean": float(r.mean()),
                  "channel_range_max": float(r.max())}
    return out


def _uniform_record(model, opts: PruneOptions, before: dict, steps: list[dict], renamed, accuracy: float) -> dict:
    """Bits, scheme, accuracy before / on the grid without retraining / after, and per layer the weight range
    before and after and the exact bytes of its codes with their scales and zero points."""
    after = weight_ranges(model)
    layers = prunable(model)
    quantized = [s for s in steps if "(no retraining)" in s["step"]]
    rows, total = [], 0
    for old, b in before["ranges"].items():
        now = old if renamed is None else renamed[old]
        if now is None:
            continue
        w = layers[now].weight
        n_bytes = uniform_bytes(w.numel(), opts.uniform_bits, w.shape[0] if opts.uniform_per_channel else 1)
        total += n_bytes
        rows.append({"layer": now, "before": b, "after": after[now], "bytes": n_bytes})
    return {"bits": opts.uniform_bits, "scheme": opts.uniform_scheme, "per_channel": opts.uniform_per_channel,
            "range_reg": opts.range_reg, "retrain_epochs": opts.retrain_epochs,
            "accuracy_before": steps[0]["test_accuracy"],
            "accuracy_quantized": quantized[0]["test_accuracy"], "accuracy_after": accuracy, "bytes": total,
            "layers": rows}


def _add_gates(model):
    """The model with a tsReLU in place of every ReLU, open (every gate 1): the same function, to learn from."""
    from fxp.models import build

    gated_model = build(with_tsrelu(model.spec), model.config)
    missing, unexpected = gated_model.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("tsrelu") for k in missing):
        raise FxpError(f"adding tsReLU gates lost track of {unexpected or missing}; report this as a bug")
    gated_model.config = model.config
    return gated_model


def _shapes(model) -> list[str]:
    """The compute layers' widths, as an architecture is written: ``conv 6, conv 16, fc 120, fc 84, fc 10``."""
    return [f"{'conv' if m.weight.dim() == 4 else 'fc'} {m.weight.shape[0]}" for m in prunable(model).values()]


def _record(metrics, run, opts, reference, accuracy, before, after, neurons, steps, renamed=None,
            merged=(), uniform_total: int | None = None) -> dict:
    absorbed: dict[str, list[str]] = {}  # a layer that took others in by merging: their names
    for pair in merged:
        a, b = pair.split("+")
        absorbed[b] = absorbed.pop(a, []) + [a] + absorbed.get(b, [])
    weights_of = {b["layer"]: b["weights"] for b in before["stats"]}
    layers = []
    by_name = {s["layer"]: s for s in after["stats"]}
    store = {s["layer"]: s for s in after["storage"]}
    gone = ({"shape": [], "nonzero": 0, "neurons": 0},
            {"index_bits": 0, "value_bits": 0, "fillers": 0, "sparse_bytes": 0, "shared_bytes": 0, "huffman_bytes": 0})
    for b, bs in zip(before["stats"], before["storage"], strict=True):
        name = b["layer"]
        now = name if renamed is None else renamed[name]
        a, st = (by_name[now], store[now]) if now is not None else gone
        # a merged layer's kept weights stand for the layers merged into it as well
        counted = b["weights"] + sum(weights_of[x] for x in absorbed.get(name, []))
        layers.append({"layer": name if now in (name, None) else f"{name} (now {now})", "now": now,
                       "kind": b["kind"], "shape_before": b["shape"], "shape_after": a["shape"],
                       "weights": b["weights"], "kept": a["nonzero"], "kept_percent": 100 * a["nonzero"] / counted,
                       "neurons_before": b["neurons"], "neurons_after": a["neurons"],
                       "index_bits": st["index_bits"], "value_bits": st["value_bits"], "fillers": st["fillers"],
                       "dense_bytes": bs["dense_bytes"], "sparse_bytes": st["sparse_bytes"]})
        # a stage a layer did not go through stores it as the stage before did
        layers[-1]["shared_bytes"] = st.get("shared_bytes", st["sparse_bytes"])
        layers[-1]["huffman_bytes"] = st.get("huffman_bytes", layers[-1]["shared_bytes"])
        layers[-1]["share_bits"] = st.get("share_bits")
        layers[-1]["centroids"] = st.get("centroids")
    weights = sum(r["weights"] for r in layers)
    nonzero = sum(r["kept"] for r in layers)
    dense = sum(r["dense_bytes"] for r in layers)
    sparse = sum(r["sparse_bytes"] for r in layers)
    stages = {"float32_bytes": 4 * weights, "dense_bytes": dense, "sparse_bytes": sparse}
    if uniform_total is not None:  # the codes on their uniform grid, with scales and zero points
        stages["uniform_bytes"] = uniform_total
    if opts.share_bits is not None:
        stages["shared_bytes"] = sum(r["shared_bytes"] for r in layers)
    if opts.huffman:
        stages["huffman_bytes"] = sum(r["huffman_bytes"] for r in layers)
    memory = {}
    if opts.share_bits is not None:  # layers not shared keep their values in the weight memory
        memory = {"memory_bits_values": sum(st["memory_bits_values"] for st in after["storage"]),
                  "memory_bits_shared": sum(st.get("memory_bits_shared", st["memory_bits_values"])
                                            for st in after["storage"])}
    float_acc = (metrics.get("float_baseline") or {}).get("test_accuracy")
    summary = {"reference_accuracy": reference, "accuracy": accuracy,
               "change_points": round(100 * (accuracy - reference), 6) + 0.0,  # + 0.0 turns -0.0 into 0.0
               "float_baseline_accuracy": float_acc,
               "weights": weights, "weights_kept": nonzero, "kept_percent": 100 * nonzero / weights,
               "compression_rate": weights / max(nonzero, 1), **stages, "storage_rate": dense / max(sparse, 1),
               "final_bytes": list(stages.values())[-1],
               # Deep Compression's rate: the float32 network against what the last stage stores
               "size_rate_float32": stages["float32_bytes"] / max(list(stages.values())[-1], 1),
               "size_rate_dense": dense / max(list(stages.values())[-1], 1), **memory}
    hidden = [r for r in layers if r["now"] in (neurons or {})]
    if hidden:
        summary["hidden_neurons_before"] = sum(r["neurons_before"] for r in hidden)
        summary["hidden_neurons_after"] = sum(r["neurons_after"] for r in hidden)
    return {"run": str(run), "model": metrics.get("model"), "dataset": metrics.get("dataset"),
            "mode": metrics.get("mode"), "options": asdict(opts),
            "summary": summary, "layers": layers, "neurons": neurons, "steps": steps}
