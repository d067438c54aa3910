"""An 8N1 serial port: a receiver and a transmitter that put bytes on and off Amaranth streams.

A frame is a start bit (0), eight data bits least significant first, and a stop bit (1); the line
idles high. Both ends count bits with the same divider, ``clock_hz / baud`` rounded to the nearest
cycle, so a board top can put an accelerator behind a serial port at any clock that divides well.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from fxp.errors import FxpError
from hdl_gen.options import refused_quietly

# The stop bit's sample falls 9.5 bits after the start edge and must stay inside the stop bit, so the two
# ends' clocks may differ by some 5 % (less at small dividers, where the sample's one cycle of jitter is
# a larger part of a bit: a sender 2.5 % fast is the limit at divider 4); each end gets half of 4 %.
MAX_BAUD_ERROR = 0.02
MIN_DIVIDER = 4


def bit_timing(who: str, clock_hz: int, baud: int) -> tuple[int, float, float]:
    """``(divider, actual_baud, baud_error)`` of a clock and bit rate; ``FxpError`` if too coarse.

    The divider is ``clock_hz / baud`` rounded to nearest (halves up); ``baud_error`` is
    ``actual_baud / baud - 1``, signed. ``who`` names the caller in the message.
    """
    if clock_hz <= 0 or baud <= 0:
        raise FxpError(f"{who}: clock_hz={clock_hz} and baud={baud} must be positive")
    divider = (2 * clock_hz + baud) // (2 * baud)
    if divider < MIN_DIVIDER:
        raise FxpError(f"{who}: {clock_hz} Hz / {baud} Bd is {clock_hz / baud:.2f} cycles per bit; use a clock "
                       f"of at least {MIN_DIVIDER * baud} Hz or a baud rate of at most {clock_hz // MIN_DIVIDER}")
    actual = clock_hz / divider
    if abs(actual / baud - 1) > MAX_BAUD_ERROR:
        raise FxpError(f"{who}: {clock_hz} Hz / {baud} Bd gives {actual:.0f} Bd with divider {divider}, "
                       f"{actual / baud - 1:+.2%} off (over ±{MAX_BAUD_ERROR:.0%}); pick a baud rate near "
                       f"clock_hz / N or a higher clock")
    return divider, actual, actual / baud - 1


class UartRx(wiring.Component):
    """Receives 8N1 frames from the ``rx`` pin and offers each byte on ``o``.

    The pin passes a 2-flop synchronizer. A low level in idle starts a frame; it is confirmed half a bit
    later (a shorter glitch is ignored), and every later bit is sampled once, a whole bit after the last
    sample, so at its middle. The stop bit's sample ends the frame: a 1 delivers the byte, a 0 drops it.
    Receiving resumes at once (at mid stop bit, so a fast sender is met half a bit early), except after a
    framing error, when it waits for the line to go high first, so a held-low line (a break) gives one
    error, not a stream of zero bytes.

    Timing: ``o.valid`` is high ``divider // 2 + 2`` cycles after the first clock edge that sees the stop
    bit on the pin (half a bit to its middle, two synchronizer stages); 54 cycles at divider 104.

    Parameters
    ----------
    clock_hz: the ``sync`` clock; baud: the bit rate (limits: :func:`bit_timing`).

    Members
    -------
    rx: ``In(1)``, the pin, idle high. o: ``Out(stream.Signature(unsigned(8)))``, the received bytes;
    the payload holds still while ``o.valid`` waits for ``o.ready``.
    frame_error: ``Out(1)``, high for one cycle when a stop bit is 0 (the byte is dropped).
    overrun: ``Out(1)``, high for one cycle when a byte completes while ``o`` still holds an untaken one;
    the new byte is dropped (the one on offer is kept, as a stream must).
    divider, actual_baud, baud_error: the bit timing (:func:`bit_timing`).
    """

    @refused_quietly
    def __init__(self, clock_hz: int, baud: int = 115200) -> None:
        self.divider, self.actual_baud, self.baud_error = bit_timing(type(self).__name__, clock_hz, baud)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(unsigned(8))),
                          "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        line = Signal(init=1)  # the pin in the sync domain; idle high from reset, so reset is no start bit
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1, stages=2)
        wait = Signal(range(self.divider), name="cycles_to_sample")
        bits = Signal(8, name="received_bits")  # shifted in from the top: the first bit ends in bit 0
        bit_index = Signal(range(8))
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.FSM(name="rx_state"):
            with m.State("idle"), m.If(~line):
                # every sample then reads the pin divider // 2 to divider // 2 + 1 cycles into its bit
                m.d.sync += wait.eq(self.divider // 2 - 1)
                m.next = "start"
            with m.State("start"), m.If(wait == 0):
                m.d.sync += [wait.eq(self.divider - 1), bit_index.eq(0)]
                m.next = "data"
                with m.If(line):  # high again at mid start bit: a glitch, not a frame
                    m.next = "idle"
            with m.State("data"), m.If(wait == 0):
                m.d.sync += [bits.eq(Cat(bits[1:], line)), bit_index.eq(bit_index + 1),
                             wait.eq(self.divider - 1)]
                with m.If(bit_index == 7):
                    m.next = "stop"
            with m.State("stop"), m.If(wait == 0):
                with m.If(~line):
                    m.d.sync += self.frame_error.eq(1)
                    m.next = "break"
                with m.Elif(self.o.valid & ~self.o.ready):
                    m.d.sync += self.overrun.eq(1)
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [self.o.payload.eq(bits), self.o.valid.eq(1)]
                    m.next = "idle"
            with m.State("break"), m.If(line):
                m.next = "idle"
        return m


class UartTx(wiring.Component):
    """Sends each byte from ``i`` as an 8N1 frame on the ``tx`` pin.

    A byte is taken only while the line is idle (``i.ready`` is high exactly then, from the state, not
    from ``i.valid``); ``tx`` falls on the next cycle and the frame lasts ``10 * divider`` cycles, stop
    bit included, so a byte offered back to back follows with no idle time between frames.

    Parameters
    ----------
    clock_hz: the ``sync`` clock; baud: the bit rate (limits: :func:`bit_timing`).

    Members
    -------
    i: ``In(stream.Signature(unsigned(8)))``, the bytes to send. tx: ``Out(1)``, the pin, idle high,
    driven from a register. divider, actual_baud, baud_error: the bit timing (:func:`bit_timing`).
    """

    @refused_quietly
    def __init__(self, clock_hz: int, baud: int = 115200) -> None:
        self.divider, self.actual_baud, self.baud_error = bit_timing(type(self).__name__, clock_hz, baud)
        super().__init__({"i": In(stream.Signature(unsigned(8))), "tx": Out(1, init=1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        wait = Signal(range(self.divider), name="cycles_left_in_bit")
        to_send = Signal(9, name="bits_to_send")  # data then stop bit, shifted out from bit 0
        bits_left = Signal(range(10))
        with m.FSM(name="tx_state"):
            with m.State("idle"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [self.tx.eq(0), to_send.eq(Cat(self.i.payload, 1)), bits_left.eq(9),
                                 wait.eq(self.divider - 1)]
                    m.next = "sending"
            with m.State("sending"):
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(bits_left == 0):  # the stop bit is out, but for its last cycle: idle's
                    m.next = "idle"
                with m.Else():
                    # the stop bit's last cycle is spent in idle, which may start the next frame: 10 bits exactly
                    m.d.sync += [self.tx.eq(to_send[0]), to_send.eq(to_send[1:]), bits_left.eq(bits_left - 1),
                                 wait.eq(Mux(bits_left == 1, self.divider - 2, self.divider - 1))]
        return m
