"""A network accelerator behind a board's serial port: requests of raw pixels in, classes (and scores) out.

The protocol (``sim/uart_protocol.py`` is its host side), bytes over 8N1:

- request: ``0xA5``, a flags byte (bit 0: reply with every score; the other bits 0), then the frame's
  ``pixels`` raw pixel values (``0..levels``), one byte each, in (C, H, W) order. Bytes before a
  ``0xA5`` are skipped, so a host can resynchronise by sending the frame's worth of anything else.
- reply, one per request in order: ``0x5A``, the class index, and with flag bit 0 every score of the
  last layer, each in ``ceil(w / 8)`` bytes, least significant first, two's complement where the scores
  are signed (``w``: the score width).

Up to :data:`REQUESTS_IN_FLIGHT` requests may be outstanding; the accelerator takes a frame far faster
than the serial port brings one (at 115200 Bd a byte takes 87 µs), so replies follow requests at the
serial port's pace.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from fxp.errors import FxpError
from hdl_gen.streams import Gather
from hdl_gen.uart import UartRx, UartTx

REQUEST, REPLY = 0xA5, 0x5A
REQUESTS_IN_FLIGHT = 4  # the flags of requests whose replies are still to come


def score_bytes(score_width: int) -> int:
    """Bytes of one score in a reply."""
    return -(-score_width // 8)


def request_length(pixels: int) -> int:
    """Bytes of a request: the header, the flags and the frame's pixels."""
    return 2 + pixels


def reply_length(classes: int, score_width: int, scores: bool) -> int:
    """Bytes of a reply: the header and the class, and with the scores flag every score."""
    return 2 + (classes * score_bytes(score_width) if scores else 0)


class Requests(wiring.Component):
    """Parses requests: each frame's pixels on ``pixels`` and its flags on ``flags``.

    Parameters
    ----------
    pixels: pixels of a frame. pixel_bits: the width of a raw pixel (the network's input lane).

    Members
    -------
    i: ``In(stream.Signature(unsigned(8)))`` — bytes from the serial port.
    pixels: ``Out(stream.Signature(unsigned(pixel_bits)))`` — the pixels of each frame, in order.
    flags: ``Out(stream.Signature(unsigned(8)))`` — a request's flags byte, once per frame, before its pixels.
    """

    def __init__(self, pixels: int, pixel_bits: int) -> None:
        self.count = pixels
        super().__init__({"i": In(stream.Signature(unsigned(8))), "pixels": Out(stream.Signature(unsigned(pixel_bits))),
                          "flags": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        left = Signal(range(self.count + 1))
        with m.FSM():
            with m.State("header"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & (self.i.payload == REQUEST)):
                    m.next = "flags"
            with m.State("flags"):
                m.d.comb += [self.flags.payload.eq(self.i.payload), self.flags.valid.eq(self.i.valid),
                             self.i.ready.eq(self.flags.ready)]
                with m.If(self.i.valid & self.flags.ready):
                    m.d.sync += left.eq(self.count)
                    m.next = "pixels"
            with m.State("pixels"):
                m.d.comb += [self.pixels.payload.eq(self.i.payload), self.pixels.valid.eq(self.i.valid),
                             self.i.ready.eq(self.pixels.ready)]
                with m.If(self.i.valid & self.pixels.ready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "header"
        return m


class Replies(wiring.Component):
    """Turns each result of the network into a reply (see the module docstring).

    Parameters
    ----------
    result: the network's output layout (``class_layout``: ``index`` and ``scores``).

    Members
    -------
    i: ``In(stream.Signature(result))`` — the network's results. flags: ``In(stream.Signature(unsigned(8)))``
        — the flags of the request each result answers. o: ``Out(stream.Signature(unsigned(8)))`` — bytes.
    """

    def __init__(self, result: data.StructLayout) -> None:
        self.result = result
        scores = result["scores"].shape
        self.classes, self.score = scores.length, scores.elem_shape
        if self.classes > 256:
            raise FxpError(f"a reply gives the class in one byte; {self.classes} classes need more")
        super().__init__({"i": In(stream.Signature(result)), "flags": In(stream.Signature(unsigned(8))),
                          "o": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        per_score = score_bytes(self.score.width)
        scores = self.i.payload.scores
        message = [Const(REPLY, 8), self.i.payload.index.as_unsigned()]
        for k in range(self.classes):
            wide = Signal(unsigned(8 * per_score), name=f"score{k}")
            m.d.comb += wide.eq(scores[k])  # a signed score is sign-extended
            message += [wide[8 * b : 8 * b + 8] for b in range(per_score)]
        sent = Signal(range(len(message)))  # bytes of this reply sent so far
        # the reply's last byte: the class alone (flag bit 0 clear), or the last score's
        last = Signal()
        m.d.comb += last.eq(Mux(self.flags.payload[0], sent == len(message) - 1, sent == 1))
        with m.Switch(sent):
            for k, byte in enumerate(message):
                with m.Case(k):
                    m.d.comb += self.o.payload.eq(byte)
        done = Signal()
        m.d.comb += [self.o.valid.eq(self.i.valid & self.flags.valid),
                     done.eq(self.o.ready & self.o.valid & last),
                     self.i.ready.eq(done), self.flags.ready.eq(done)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += sent.eq(sent + 1)
        with m.If(done):
            m.d.sync += sent.eq(0)
        return m


class BoardTop(wiring.Component):
    """``network`` behind an 8N1 serial port at ``baud`` for a ``clock_hz`` clock.

    Parameters
    ----------
    network: a :class:`hdl_gen.network.Network`. clock_hz: the clock of its ``sync`` domain. baud: the bit rate.

    Members
    -------
    rx: ``In(1, init=1)`` — the serial input pin. tx: ``Out(1, init=1)`` — the serial output pin.
    uart_rx, uart_tx: the serial ports (their ``divider``, ``actual_baud`` and ``baud_error``).
    """

    def __init__(self, network, clock_hz: int, baud: int = 115200) -> None:
        self.network = network
        self.uart_rx, self.uart_tx = UartRx(clock_hz, baud), UartTx(clock_hz, baud)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        net = self.network
        per_word = net.folding.pixels_per_word
        m.submodules.uart_rx, m.submodules.uart_tx = self.uart_rx, self.uart_tx
        m.submodules.requests = requests = Requests(net.folding.pixels, net.pixel_bits)
        m.submodules.flags = flags = fifo.SyncFIFOBuffered(width=8, depth=REQUESTS_IN_FLIGHT)
        m.submodules.network = net
        m.submodules.replies = replies = Replies(net.o.signature.members["payload"].shape)
        m.d.comb += [self.uart_rx.rx.eq(self.rx), self.tx.eq(self.uart_tx.tx)]
        wiring.connect(m, self.uart_rx.o, requests.i)
        wiring.connect(m, requests.flags, flags.w_stream)
        wiring.connect(m, flags.r_stream, replies.flags)
        words = net.i.signature.members["payload"].shape
        m.submodules.pixel_words = gather = Gather(unsigned(net.pixel_bits), words, per_word)
        wiring.connect(m, requests.pixels, gather.i)
        wiring.connect(m, gather.o, net.i)
        wiring.connect(m, net.o, replies.i)
        wiring.connect(m, replies.o, self.uart_tx.i)
        return m
