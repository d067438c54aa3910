"""The host side of a board top's serial protocol (:mod:`hdl_gen.board_top`), and 8N1 at the bit level.

``request``/``parse_reply`` are what a host sends and reads over a serial port; ``frame_bits`` and
``decode_waveform`` put bytes on and off a pin level by level, for simulations that drive the pins.
"""

from __future__ import annotations

import numpy as np

from hdl_gen.board_top import REPLY, REQUEST, reply_length, score_bytes

SCORES = 1  # flag bit 0: reply with every score


def request(pixels, scores: bool = False) -> bytes:
    """One request: the header, the flags and the frame's raw pixels (each 0..255), in (C, H, W) order."""
    raw = np.asarray(pixels).reshape(-1)
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise ValueError(f"raw pixels must be bytes (0..255), got {raw.min()}..{raw.max()}")
    return bytes([REQUEST, SCORES if scores else 0, *raw.astype(np.uint8).tolist()])


def parse_reply(data: bytes, classes: int, score_width: int, signed: bool, scores: bool) -> tuple[int, list[int] | None]:
    """(class index, every score or None) of one reply; ``ValueError`` naming what is wrong with it."""
    if len(data) != reply_length(classes, score_width, scores) or data[0] != REPLY:
        raise ValueError(f"not a reply: {data[:8].hex()}... ({len(data)} bytes)")
    if not scores:
        return data[1], None
    per = score_bytes(score_width)
    values = [int.from_bytes(data[2 + k * per : 2 + (k + 1) * per], "little", signed=signed) for k in range(classes)]
    return data[1], values


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """An 8N1 frame's levels, one per bit: start bit, eight data bits least significant first, stop bit."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def decode_waveform(levels: list[int], divider: int) -> tuple[list[int], list[int]]:
    """The bytes of a pin's level in each cycle (``divider`` cycles a bit), sampled at the nominal middle of
    each bit, and the cycle each start bit began; a frame without its start and stop bits is an error."""
    out, starts, n = [], [], 0
    while n < len(levels):
        if levels[n] == 0:
            if n + divider // 2 + 9 * divider >= len(levels):
                raise ValueError(f"a frame starting at cycle {n} is cut off")
            samples = [levels[n + divider // 2 + k * divider] for k in range(10)]
            if samples[0] != 0 or samples[9] != 1:
                raise ValueError(f"bad frame at cycle {n}: {samples}")
            out.append(sum(b << k for k, b in enumerate(samples[1:9])))
            starts.append(n)
            n += 9 * divider + divider // 2  # on to the middle of the stop bit
        n += 1
    return out, starts
