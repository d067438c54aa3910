"""A network behind the serial port (hdl_gen.board_top), driven pin by pin in Amaranth's simulator: every
reply equals the golden model's class and scores, requests with and without scores, noise between them."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fxp import fxpm
from fxp.cli import main
from fxp.datasets import load
from hdl_gen.board_top import BoardTop
from hdl_gen.folding import fold
from hdl_gen.network import Network, compute_layers
from sim import golden
from sim.uart_protocol import decode_waveform, frame_bits, parse_reply, reply_length, request

CLOCK_HZ, BAUD = 1_000_000, 100_000  # 10 cycles a bit: the protocol, not the serial port's timing, under test


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The default digits MLP (fixed point: every pixel bit matters, the scores are signed 10-bit words)."""
    root = tmp_path_factory.mktemp("mlp")
    assert main(["train", "--epochs", "1", "--limit-train", "300", "--quiet", "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "m.fxpm")]) == 0
    return fxpm.load(root / "m.fxpm")


def _serve(top: BoardTop, sent: bytes, tail_bytes: int) -> list[int]:
    """Drive ``sent`` on the rx pin, then idle long enough for ``tail_bytes`` more bytes and the network's
    latency; the bytes of the tx pin."""
    divider = top.uart_rx.divider
    levels = [1] * 20 + [b for byte in sent for b in frame_bits(byte)]
    cycles = divider * len(levels) + 10 * divider * tail_bytes + 2000
    seen = []

    async def bench(ctx):
        for n in range(cycles):
            ctx.set(top.rx, levels[n // divider] if n // divider < len(levels) else 1)
            await ctx.tick()
            seen.append(ctx.get(top.tx))

    sim = Simulator(top)
    sim.add_clock(1 / CLOCK_HZ)
    sim.add_testbench(bench)
    sim.run()
    return decode_waveform(seen, divider)[0]


def test_replies_are_the_golden_models(mlp):
    data = load("digits")
    raw = np.rint(data.x_test[:4].numpy() * 16).astype(np.int64)  # the raw pixels 0..16
    want = golden.run(mlp, raw / 16)[-1]
    net = Network(mlp, fold(compute_layers(mlp), 64, 32), levels=16)
    top = BoardTop(net, CLOCK_HZ, BAUD)
    score = net.o.signature.members["payload"].shape["scores"].shape.elem_shape
    classes, width = 10, score.width
    assert score.signed and width > 8  # two bytes a score, two's complement
    flags = [True, False, True, False]
    sent = b"\x00\x13" + b"".join(request(r, scores=f) for r, f in zip(raw, flags))  # noise before the first
    got = _serve(top, sent, reply_length(classes, width, True))
    for k, f in enumerate(flags):
        n = reply_length(classes, width, f)
        index, scores = parse_reply(bytes(got[:n]), classes, width, True, f)
        got = got[n:]
        assert index == int(np.argmax(want[k]))
        if f:
            assert scores == want[k].tolist()
    assert got == []


def test_a_hand_folding_beyond_the_board_is_refused_before_anything_is_written(mlp, tmp_path, capsys):
    """--cycles 64 puts the 64x64 layer's 4,096 products on 64 multipliers; the iCEBreaker has 8 DSPs. The
    estimate refuses it at once, naming the folding --board alone would choose, instead of after synthesis."""
    path = tmp_path / "m.fxpm"
    fxpm.save(path, mlp.spec, mlp.arrays)
    out = tmp_path / "hw"
    assert main(["gen", "model", str(path), "--board", "icebreaker", "--cycles", "64", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "DSP" in err and "the iCEBreaker (Lattice iCE40 UP5K) has 8" in err
    assert "fits by the estimates" in err and not out.exists()
