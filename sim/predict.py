"""``fxp predict``: the golden model's accuracy beside PyTorch's, and the integer mismatch count.

Three views of one model on one dataset: the float baseline (from the training run's metrics, when
it trained one), the fake-quantized PyTorch model (the run's checkpoint, evaluated with exact
accumulation) and the integer model description run by the golden model. The PyTorch integer path
(``fxp.torch_int``) runs the same description independently; the number of integer outputs, over
every layer and every image, on which it and the golden model differ must be 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fxp import fxpm, torch_int
from fxp.datasets import Dataset
from fxp.errors import FxpError
from sim import golden


def run_predict(model_path: str | Path, data: Dataset, run: str | Path | None = None, limit: int | None = None,
                batch: int = 1000) -> dict:
    model = fxpm.load(model_path)
    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    if list(x.shape[1:]) != list(model.spec["input"]["shape"]) and int(np.prod(x.shape[1:])) != int(
        np.prod(model.spec["input"]["shape"])
    ):
        raise FxpError(f"the model takes input {model.spec['input']['shape']} but {data.name} has {list(x.shape[1:])}; "
                       "use the dataset the model was trained on")
    per_layer = [0] * (len(model.layers) + 1)
    correct = 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].numpy()
        g = golden.run(model, xb)
        t = torch_int.run(model, xb)
        for j, (a, b) in enumerate(zip(g, t)):
            per_layer[j] += int((a != b.numpy()).sum())
        correct += int((g[-1].reshape(len(xb), -1).argmax(1) == y[i : i + batch].numpy()).sum())
    rec = {
        "model": str(model_path),
        "dataset": data.name,
        "images": len(x),
        "golden_accuracy": correct / len(x),
        "integer_mismatches": sum(per_layer),
        "mismatches_per_layer": dict(zip(["input"] + [layer["name"] for layer in model.layers], per_layer)),
        "integer_outputs_compared": int(sum(np.prod(s) for s in [model.spec["input"]["shape"], *model.shapes]) * len(x)),
    }
    if run is not None:
        from fxp.train import evaluate, load_checkpoint

        run = Path(run)
        net = load_checkpoint(run / "checkpoint.pt" if run.is_dir() else run, exact=True)
        trained, described = net.spec.get("name"), model.spec.get("name")
        trained_shape, described_shape = list(net.spec["input_shape"]), list(model.input.shape)
        if trained != described or trained_shape != described_shape:
            raise FxpError(f"run {run} trained model {trained!r} on input {trained_shape}, but {model_path} "
                           f"describes {described!r} on input {described_shape}; give the run it was exported from")
        if trained_shape != list(x.shape[1:]):  # golden reshapes the images to the description; the run cannot
            raise FxpError(f"run {run} trained model {trained!r} on input {trained_shape}, but {data.name} has "
                           f"{list(x.shape[1:])}; use the dataset the model was trained on")
        rec["checkpoint_mode"] = net.config.mode
        try:
            rec["fake_quantized_accuracy"] = evaluate(net, x, y)
        except RuntimeError as e:  # same name and input, other layers (a model file edited since)
            raise FxpError(f"run {run} holds another model than {model_path} ({str(e).splitlines()[0]}); give "
                           "the run it was exported from") from None
        metrics = (run if run.is_dir() else run.parent) / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            if "float_baseline" in m:
                rec["float_accuracy"] = m["float_baseline"]["test_accuracy"] if not limit else None
    return rec
