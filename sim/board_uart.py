"""The board top of a network folder under cocotb, spoken to over its serial pins (:mod:`sim.tb_board_uart`).

``fxp sim`` checks the network's stream ports; this checks what a host sees: the folder's
``fxp_board.v`` (``fxp gen model --board``: the network behind the serial port, ``clk``, ``rst``, ``rx``,
``tx``) on Verilator or Icarus, its clock the board's, cocotbext-uart sending the dataset's test images
as requests of :mod:`hdl_gen.board_top`'s protocol at the folder's baud rate and reading the replies.
Every ``scores_every``-th request asks for the scores; seeded noise bytes (never the ``0xA5`` header)
come before the first request and before some others, and seeded idle gaps before some requests. Each
reply must equal, byte for byte, the one the golden model's class (the lowest index among equal largest
scores) and scores make. The record (``sim_board_uart_<simulator>.json`` in the folder) gives the
mismatched replies, the hardware's accuracy beside the golden one, and the time taken.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from fxp.resources import write_atomic
from hdl_gen.board_top import REPLY, REQUEST, REQUESTS_IN_FLIGHT, score_bytes
from sim.cocotb_runner import SIMULATORS, run_cocotb
from sim.uart_protocol import parse_reply, request

NOISE_EVERY = 8  # about one request in this many has noise bytes before it (the first always has)
GAP_EVERY = 4  # about one request in this many waits for an idle line first


def reply(index: int, scores, score_width: int, signed: bool, with_scores: bool) -> bytes:
    """The reply the board top owes a request: ``0x5A``, the class, and with the scores flag every score
    in ``ceil(width / 8)`` bytes, least significant first, two's complement where signed."""
    out = bytes([REPLY, index])
    if with_scores:
        per = score_bytes(score_width)
        out += b"".join(int(s).to_bytes(per, "little", signed=signed) for s in scores)
    return out


def golden_replies(sidecar: dict, model, raw: np.ndarray, flags: list[bool]) -> tuple[list[bytes], np.ndarray]:
    """Per frame of ``raw``, the golden model's reply (with the scores where its flag says), and the
    golden classes. The one place expectations come from: the negative test corrupts a byte here."""
    from sim.network_run import expected_words

    _, scores, classes = expected_words(sidecar, model, raw)
    width, signed = sidecar["out_lane_width"], sidecar["out_lane_signed"]
    return [reply(int(c), s.tolist(), width, signed, f) for c, s, f in zip(classes, scores, flags)], classes


def _noise(rng: random.Random, count: int) -> bytes:
    """``count`` random bytes, none of them the request header (the parser would take it for one)."""
    return bytes(rng.choice([b for b in range(256) if b != REQUEST]) for _ in range(count))


def run_board_uart(folder: str | Path, simulator: str = "verilator", images: int = 100, seed: int = 0,
                   scores_every: int = 2, dataset: str | None = None, waves: bool = False) -> dict:
    """The first ``images`` test images through the folder's board top over its serial pins (see the module
    docstring); writes and returns the record. Raises FxpError for a folder without a board top, an
    unknown simulator or a failed build; a mismatch is in the record (``mismatches``), not an error."""

    from fxp import fxpm
    from hdl_gen.unit_folder import check_identifier, read_sidecar
    from sim.network_run import images as test_images

    folder = Path(folder)
    if simulator not in SIMULATORS:
        raise FxpError(f"simulator {simulator!r} is not supported; use {' or '.join(SIMULATORS)}")
    for name, value in (("images", images), ("scores_every", scores_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FxpError(f"{name} must be a whole number of at least 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FxpError(f"seed must be 0 or more, got {seed!r}")
    sidecar = read_sidecar(folder)
    spec = sidecar.get("board")
    if sidecar.get("kind") != "network" or not spec:
        raise FxpError(f"{folder} holds no board design; make one with fxp gen model MODEL --board NAME --out {folder}")
    check_identifier(spec.get("top"), "board top")
    if not isinstance(spec.get("verilog"), str) or Path(spec["verilog"]).name != spec["verilog"]:
        raise FxpError(f"the sidecar's board Verilog {spec.get('verilog')!r} is not a file name in the folder; "
                       f"regenerate the folder with fxp gen model --board {spec.get('name')} --force")
    verilog = folder / spec["verilog"]
    if not verilog.is_file():
        raise FxpError(f"{verilog} is missing; regenerate the folder with fxp gen model --board {spec['name']} --force")
    model = fxpm.load(folder / sidecar["description"])
    raw, labels, name = test_images(sidecar, model, dataset, images)
    n = len(raw)
    flags = [k % scores_every == 0 for k in range(n)]
    want, golden_classes = golden_replies(sidecar, model, raw, flags)

    rng = random.Random(seed)
    bit_ns = 1e9 / spec["baud"]
    noise = [_noise(rng, rng.randint(1, 4) if k == 0 or rng.random() < 1 / NOISE_EVERY else 0) for k in range(n)]
    # an idle line for a whole number of ns, up to three bit times: start bits at any phase of the clock
    gaps = [rng.randint(1, int(3 * bit_ns)) if k and rng.random() < 1 / GAP_EVERY else 0 for k in range(n)]
    chunks = [noise[k] + request(raw[k], scores=flags[k]) for k in range(n)]
    line_bytes = sum(map(len, chunks)) + sum(map(len, want))  # everything that crosses the wire, both ways
    latency_ns = (4 * sidecar["cycles_per_frame"] + 1000) * 1e9 / spec["clock_hz"]
    deadline_ns = int(2 * (line_bytes * 10 * bit_ns + sum(gaps) + n * latency_ns)) + 1

    build_dir = folder / f"sim_build_board_{simulator}"
    config = {"clock_period_ps": round(1e12 / spec["clock_hz"]), "baud": spec["baud"], "in_flight": REQUESTS_IN_FLIGHT,
              "chunks": [c.hex() for c in chunks], "gaps_ns": gaps, "replies": [r.hex() for r in want],
              "deadline_ns": deadline_ns, "tail_ns": int(2 * max(map(len, want)) * 10 * bit_ns + latency_ns)}
    sources = [verilog.resolve(), *((folder / m).resolve() for m in sidecar.get("sim_models", []))]
    run = run_cocotb(sources, spec["top"], "sim.tb_board_uart", simulator, build_dir, config, waves)
    build_seconds, seconds = run["build_seconds"], run["seconds"]
    if run["result"] is None:
        raise FxpError(f"the {simulator} testbench wrote no result; see {run['log']}")
    result = run["result"]
    got = [bytes.fromhex(r) for r in result["replies"]]

    bad = [k for k, (a, b) in enumerate(zip(got, want)) if a != b]
    missing = n - len(got)
    width, signed = sidecar["out_lane_width"], sidecar["out_lane_signed"]
    hardware = []
    for g, f in zip(got, flags):
        try:
            hardware.append(parse_reply(g, sidecar["classes"], width, signed, f)[0])
        except ValueError:  # not a reply at all: no class
            hardware.append(-1)
    rec = {"simulator": simulator, "kind": "board_uart", "top": spec["top"], "dataset": name, "images": n,
           "requests_with_scores": sum(flags), "scores_every": scores_every,
           "noise_bytes": sum(map(len, noise)), "idle_gaps": sum(1 for g in gaps if g),
           "clock_hz": spec["clock_hz"], "baud": spec["baud"], "divider": spec["divider"],
           "mismatches": len(bad) + missing, "missing_replies": missing, "extra_bytes": len(result["extra"]) // 2,
           "golden_accuracy": float((golden_classes == labels).mean()),
           "hardware_accuracy": None if missing else float((np.array(hardware) == labels).mean()),
           "passed": run["passed"] and not bad and not missing and not result["extra"],
           "seconds": seconds, "build_seconds": build_seconds, "simulated_ms": result["sim_ns"] / 1e6,
           "seed": seed, "log": run["log"]}
    first = bad[0] if bad else (len(got) if missing else None)
    if first is not None:
        rec["first_mismatch"] = {"image": first, "scores": flags[first], "expected": want[first].hex(),
                                 "got": got[first].hex() if first < len(got) else None, "label": int(labels[first])}
    write_atomic(folder / f"sim_board_uart_{simulator}.json", json.dumps(rec, indent=1) + "\n")
    return rec
