"""Progress that reads well both on a terminal and in a log file.

On a terminal it is a tqdm bar. When stderr is not a terminal (CI logs, ``2> train.log``) tqdm's
``\\r`` redraws turn into one unreadable line, so plain lines are printed instead: one per item of
a kept bar (``fixed epochs 3/20: loss 0.123, test 95.10%``), and for a transient bar (``leave=False``,
e.g. batches) at most one every ``LOG_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def track(iterable: Iterable, desc: str = "", *, total: int | None = None, leave: bool = True,
          disable: bool = False):
    """``iterable`` with progress on stderr: a tqdm bar on a terminal, plain lines otherwise.

    The result supports ``set_postfix(**values)``, shown on the bar or at the end of the item's line.
    ``disable=True`` prints nothing at all.
    """
    isatty = getattr(sys.stderr, "isatty", None)
    if disable or (isatty is not None and isatty()):
        return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable)
    return LogProgress(iterable, desc, total=total, every_item=leave)


class LogProgress:
    """Plain progress lines on stderr, no carriage returns: the non-terminal side of :func:`track`."""

    def __init__(self, iterable: Iterable, desc: str = "", *, total: int | None = None, every_item: bool = True,
                 interval_s: float = LOG_INTERVAL_S) -> None:
        self.iterable, self.desc, self.every_item, self.interval_s = iterable, desc, every_item, interval_s
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.postfix: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator:
        last = time.monotonic()
        for n, item in enumerate(self.iterable, 1):
            yield item  # the line comes after the item's work, so it carries the postfix set during it
            now = time.monotonic()
            if self.every_item or now - last >= self.interval_s:
                self._line(n)
                last = now

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: object) -> None:
        """Values shown at the end of the next line (as tqdm's ``set_postfix``)."""
        self.postfix = {k: _text(v) for k, v in {**(ordered_dict or {}), **values}.items()}

    def close(self) -> None:
        """Nothing to clean up (tqdm compatibility)."""

    def _line(self, n: int) -> None:
        count = f"{n}/{self.total}" if self.total is not None else str(n)
        text = f"{self.desc} {count}" if self.desc else count
        if self.postfix:
            text += ": " + ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(text, file=sys.stderr, flush=True)


def _text(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
