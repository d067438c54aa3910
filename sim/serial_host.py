"""``fxp run``: the host side of a board top over a serial port: test images out, classes back.

Requests follow :mod:`hdl_gen.board_top`'s protocol (``sim.uart_protocol`` builds and parses them).
The host keeps up to :data:`hdl_gen.board_top.REQUESTS_IN_FLIGHT` requests outstanding, as many as the
board top holds flags for, so the serial port never idles between frames; a serial port cannot push
back, so one request more could be lost. With a network folder, every reply is compared with the
golden model's class (and scores), and the record gives the board's accuracy beside the golden one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from hdl_gen.board_top import REQUESTS_IN_FLIGHT, reply_length
from sim.uart_protocol import parse_reply, request

BAUD = 115200


def open_port(port: str, baud: int, timeout: float):
    """The serial port ``port`` opened at ``baud`` (8N1); a one-line error naming the fix if it cannot be."""
    import serial

    if not Path(port).exists():
        raise FxpError(f"serial port {port} does not exist; give the board's port (ls /dev/ttyUSB* /dev/ttyACM*), "
                       "or run the design in simulation with fxp run --sim DIR")
    try:
        return serial.Serial(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise FxpError(f"serial port {port} cannot be opened ({str(e).splitlines()[0]}); check its permissions "
                       "(the dialout group) and that no other program holds it") from None


def classify(port, raw: np.ndarray, *, classes: int, score_width: int, signed: bool, scores: bool = False,
             in_flight: int = REQUESTS_IN_FLIGHT, progress: bool = True, name: str = "the board") -> list:
    """Send each frame of ``raw`` (frames, pixels) as a request on the open serial ``port``; per frame
    ``(class index, scores or None)``. A reply that does not come within the port's timeout, or is not
    a reply, is an error naming the request."""
    from fxp.progress import track

    n = len(raw)
    length = reply_length(classes, score_width, scores)
    out, sent = [], 0
    for k in track(range(n), f"classifying over {name}", leave=False, disable=not progress):  # a line a 30 s in logs
        while sent < min(n, k + in_flight):
            port.write(request(raw[sent], scores=scores))
            sent += 1
        data = port.read(length)
        if len(data) < length:
            raise FxpError(f"no reply to request {k} from {name} within {port.timeout:g} s ({len(data)} of {length} "
                           "bytes); check that the board holds this design and the baud rate matches")
        try:
            out.append(parse_reply(data, classes, score_width, signed, scores))
        except ValueError as e:
            raise FxpError(f"reply {k} from {name} is garbled ({e}); check the baud rate and the design") from None
    return out


def run(folder: str | Path | None, port: str | None, dataset: str | None, images: int | None, *,
        scores: bool = False, baud: int | None = None, timeout: float | None = None, progress: bool = True) -> dict:
    """Test images through a board over ``port``, or (``port`` None) through the board top of ``folder``
    simulated behind a pseudo-terminal (:mod:`sim.board_sim`); the record (see the module docstring).
    ``timeout``: seconds to wait for each reply (default 5 from a board; from the simulation, which
    runs far slower than the board, 600)."""
    from fxp.datasets import load

    sidecar = model = None
    if folder is not None:
        from fxp import fxpm
        from hdl_gen.unit_folder import read_sidecar

        folder = Path(folder)
        sidecar = read_sidecar(folder)
        if sidecar.get("kind") != "network" or not sidecar.get("board"):
            raise FxpError(f"{folder} holds no board design; make one with fxp gen model MODEL --board NAME "
                           f"--out {folder}")
        model = fxpm.load(folder / "model.fxpm")
    elif port is None:
        raise FxpError("give the board's serial port (--port DEV) or a board folder to simulate (--sim DIR)")
    elif scores:
        raise FxpError("--scores needs the board folder (the scores' width and sign); give it, or drop --scores")
    if sidecar is not None:
        from sim.network_run import expected_words
        from sim.network_run import images as test_images

        raw, labels, name = test_images(sidecar, model, dataset, images or 1 << 30)
        _, want_scores, want = expected_words(sidecar, model, raw)
        classes, width, signed = sidecar["classes"], sidecar["out_lane_width"], sidecar["out_lane_signed"]
        baud = baud or sidecar["board"]["baud"]
    else:
        if dataset is None:
            raise FxpError("give --dataset (the test images to send), or the board folder")
        data = load(dataset)
        x = data.x_test[: images or len(data.x_test)]
        raw, labels, name = data.raw(x).reshape(len(x), -1), data.y_test[: len(x)].numpy(), data.name
        want_scores = want = None
        classes, width, signed = 256, 8, False  # class-only replies: two bytes whatever the model
        baud = baud or BAUD
    if timeout is None:  # a Fashion-MNIST request is 1.7 M cycles of serial line at 25 MHz: seconds of simulation
        timeout = 5.0 if port is not None else 600.0
    rec = {"dataset": name, "images": len(raw), "baud": baud, "scores": scores}
    t = time.perf_counter()
    if port is None:
        from sim.board_sim import BoardSim

        with BoardSim(folder, sidecar) as board:
            t = time.perf_counter()
            with open_port(board.port, baud, timeout) as serial_port:
                got = classify(serial_port, raw, classes=classes, score_width=width, signed=signed, scores=scores,
                               progress=progress, name="the simulated board")
            seconds = time.perf_counter() - t
        rec.update(port="simulated", build_seconds=board.build_seconds, harness=board.stats)
        if board.stats.get("framing_errors"):
            raise FxpError(f"the simulated board sent {board.stats['framing_errors']} bytes with a bad stop bit; "
                           "regenerate the folder")
    else:
        with open_port(port, baud, timeout) as serial_port:
            got = classify(serial_port, raw, classes=classes, score_width=width, signed=signed, scores=scores,
                           progress=progress, name=port)
        seconds = time.perf_counter() - t
        rec["port"] = port
    predicted = np.array([index for index, _ in got])
    rec.update(seconds=seconds, frames_per_second=len(raw) / seconds if seconds else None,
               accuracy=float((predicted == labels).mean()), predictions=predicted.tolist())
    if want is not None:
        bad = [k for k, (index, s) in enumerate(got)
               if index != want[k] or (scores and s != want_scores[k].tolist())]
        rec.update(golden_accuracy=float((want == labels).mean()), mismatches=len(bad),
                   first_mismatch=None if not bad else {"image": bad[0], "expected": int(want[bad[0]]),
                                                        "got": int(got[bad[0]][0])})
    return rec
