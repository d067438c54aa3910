"""``fxp sim DIR`` for a network folder (``fxp gen model``): test images through the accelerator.

The stimulus is the dataset's own test images as raw pixels (``pixels_per_word`` a transfer, the
frame in (C, H, W) order); the expected word of a frame is the golden model's: the class index (the
lowest among equal largest scores) and every score of the last layer. Every output word is compared;
the record gives the hardware's accuracy beside the golden one, and the cycles per frame measured
beside the folding's prediction.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from fxp.fxpm import Model
from sim import golden
from sim.lanes import pack_lanes, words_to_ints


def images(sidecar: dict, model: Model, dataset: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` test images of ``dataset`` (default: the one the folder was made for) as raw pixels
    (n, pixels), their labels, and the dataset's name; an error if they do not fit the accelerator."""
    from fxp.datasets import load

    name = dataset or sidecar.get("dataset")
    if not name:
        raise FxpError("the network folder names no dataset; give one (dataset=, --dataset)")
    data = load(name)
    x = data.x_test[:n]
    raw = data.raw(x).reshape(len(x), -1)
    if raw.shape[1] != sidecar["pixels"]:
        raise FxpError(f"{data.name} images have {raw.shape[1]} pixels, the accelerator takes {sidecar['pixels']}; "
                       "give the dataset it was made for")
    if data.levels != sidecar["levels"]:
        raise FxpError(f"{data.name} pixels go up to {data.levels}, the accelerator's table to {sidecar['levels']}; "
                       f"give the dataset it was made for, or regenerate it for {data.name}")
    return raw, data.y_test[:n].numpy(), data.name


def expected_words(sidecar: dict, model: Model, raw: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Per frame, the golden output word (class index, then every score), the scores and the classes."""
    from fxp.datasets import normalize

    scores = golden.run(model, normalize(raw, sidecar["levels"]))[-1]
    classes = scores.argmax(axis=1)  # the first of equal maxima: the lowest index
    packed = words_to_ints(pack_lanes(scores, sidecar["out_lane_width"], sidecar["out_lane_signed"]))
    return [int(c) | (s << sidecar["index_bits"]) for c, s in zip(classes, packed)], scores, classes


def input_words(sidecar: dict, raw: np.ndarray) -> np.ndarray:
    """Raw pixels (frames, pixels) as input transfers: uint32 rows, ``pixels_per_word`` pixels each."""
    return pack_lanes(raw.reshape(-1, sidecar["pixels_per_word"]), sidecar["in_lane_width"], False)


def _as_rows(words: list[int], n_words: int) -> np.ndarray:
    data = b"".join(w.to_bytes(4 * n_words, "little") for w in words)
    return np.frombuffer(data, "<u4").reshape(len(words), n_words)


def run_network(folder: Path, sidecar: dict, simulator: str, n_images: int, seed: int, waves: bool, harness: str,
                gap: float | None, stall: float | None, dataset: str | None) -> dict:
    """Replay test images through the network in ``folder`` (see the module docstring); the record."""
    from fxp import fxpm

    model = fxpm.load(folder / "model.fxpm")
    raw, labels, name = images(sidecar, model, dataset, n_images)
    n = len(raw)
    want, scores, golden_classes = expected_words(sidecar, model, raw)
    mask = (1 << sidecar["index_bits"]) - 1
    extra: dict = {}
    if harness == "cpp":
        from sim.replay import replay

        def write(in_path: Path, exp_path: Path) -> None:
            with open(in_path, "xb") as fi, open(exp_path, "xb") as fe:
                input_words(sidecar, raw).tofile(fi)
                _as_rows(want, sidecar["out_words"]).tofile(fe)

        r = replay(folder, sidecar, model, n, seed, gap or 0.0, stall or 0.0, write=write)
        n_bad, first, received, seconds, log = r["mismatches"], r["first"], r["received"], r["seconds"], r["log"]
        got_classes = golden_classes if n_bad == 0 and received == n else None  # every bit equal: the same classes
        extra = {"build_seconds": r["build_seconds"], "rebuilt": r["rebuilt"], "prepare_seconds": r["prepare_seconds"],
                 "cycles": r["cycles"], "cycles_per_frame_measured": r["cycles"] / n,
                 "cycles_per_second": r["cycles"] / seconds if seconds else None}
        got_word = r["got_word"]
    else:
        stream = {k: v for k, v in (("gap", gap), ("stall", stall)) if v is not None}
        in_words = words_to_ints(input_words(sidecar, raw))
        t = time.perf_counter()
        if simulator == "amaranth":
            got, log, latency = _amaranth(folder, sidecar, model, in_words, n, seed, waves, stream)
        else:
            got, log, latency = _cocotb(folder, sidecar, in_words, want, simulator, seed, waves, stream)
        seconds = time.perf_counter() - t
        if latency is not None:
            extra["latency_cycles"] = latency
        bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        n_bad, first, received = len(bad), (bad[0] if bad else None), len(got)
        got_word = got[first] if bad else None
        got_classes = np.array([w & mask for w in got]) if received == n else None
    missing = max(n - received, 0)
    golden_accuracy = float((golden_classes == labels).mean())
    rec = {"simulator": simulator, "harness": harness, "unit": sidecar["top"], "kind": "network",
           "dataset": name, "images": n, "vectors": n, "output_words": n, "mismatches": n_bad + missing,
           "missing_outputs": missing, "golden_accuracy": golden_accuracy,
           "hardware_accuracy": None if got_classes is None else float((got_classes == labels).mean()),
           "cycles_per_frame_predicted": sidecar["cycles_per_frame"], "seconds": seconds,
           "vectors_per_second": n / seconds if seconds else None,
           "gap": gap, "stall": stall, "seed": seed, "log": log, **extra}
    if first is None and missing:
        first = received
    if first is not None:
        rec["first_mismatch"] = {"vector": first, "output_transfer": 0, "outputs": list(range(sidecar["classes"])),
                                 "expected": [int(golden_classes[first]), *scores[first].tolist()],
                                 "got_word": got_word, "label": int(labels[first])}
    return rec


def _amaranth(folder: Path, sidecar: dict, model: Model, in_words: list[int], n: int, seed: int, waves: bool,
              stream: dict) -> tuple[list[int], None, None]:
    from hdl_gen.folding import from_sidecar
    from hdl_gen.network import Network, plan
    from sim.amaranth_runner import run_stream

    _, layers, fixed = plan(model, sidecar.get("options"))
    folding = from_sidecar(sidecar, layers, fixed)
    net = Network(model, folding, sidecar["levels"], sidecar.get("options"))
    cycles = (len(in_words) + n * (sidecar["cycles_per_frame"] + 8)) * 4 + 500
    vcd = str(folder / "amaranth.vcd") if waves else None
    got = run_stream(net, in_words, n, seed=seed, max_cycles=cycles, vcd=vcd, **stream)
    return got, None, None


def _cocotb(folder: Path, sidecar: dict, in_words: list[int], want: list[int], simulator: str, seed: int, waves: bool,
            stream: dict) -> tuple[list[int], str, int | None]:
    from hdl_gen.unit_folder import sim_sources
    from sim.cocotb_runner import run_stream_test

    ports = {k: k for k in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data")}
    r = run_stream_test([folder / name for name in sim_sources(sidecar)], sidecar["wrapper"], in_words, want,
                        simulator, folder / f"sim_build_{simulator}", seed=seed,
                        cycles_per_output=sidecar["cycles_per_frame"] + 8, waves=waves, ports=ports, **stream)
    return r["outputs"], r["log"], r["latency_cycles"]
