"""Dynamic fixed point: a per-tensor binary point that follows the data.

Source: M. Courbariaux, Y. Bengio, J.-P. David, "Training deep neural networks with low precision
multiplications" (2014), section 5. Each tensor keeps its word width; its scaling factor (here the
number of fractional bits) is revised every ``update_interval`` observations from the overflow rate,
the share of values whose magnitude reaches the format's maximum:

* rate above ``max_overflow_rate``  → one more integer bit (``frac_bits - 1``);
* else, if the rate with one integer bit fewer (``frac_bits + 1``) would not exceed the maximum
  → one integer bit fewer;
* else keep.

Their reference setting: 10-bit propagations, 12-bit updates, update every 100 batches, maximum
overflow rate 1e-4 (they count widths without the sign bit; fxp counts the sign bit in
``word_bits``).
"""

from __future__ import annotations

import math

import torch

from fxp.errors import FxpError
from fxp.format import Format
from fxp.quantize import as_tensor, quantize
from fxp.tensor import FxTensor


def _across_processes(values: list, dtype: torch.dtype, op: str) -> list:
    """``values`` reduced (SUM or MAX) over all processes of a torch.distributed run; as is otherwise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    t = torch.tensor(values, dtype=dtype)
    torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op))
    return t.tolist()


def max_abs_frac_bits(max_abs: float, word_bits: int, signed: bool = True) -> int:
    """The most fractional bits with which ``max_abs`` still fits below the format's maximum."""
    if not math.isfinite(max_abs):
        raise FxpError(f"max_abs={max_abs} is not finite; clean the tensor before initializing its scale")
    raw_max = Format(word_bits, 0, signed).raw_max
    if max_abs <= 0:
        return word_bits - (1 if signed else 0)  # nothing to hold: values in [-1, 1)
    f = math.floor(math.log2(raw_max / max_abs))
    while math.ldexp(raw_max, -f) < max_abs:  # log2 may be off by one ulp near powers of two
        f -= 1
    while math.ldexp(raw_max, -(f + 1)) >= max_abs:
        f += 1
    return f


class ScaleTracker:
    """The dynamic scale of one tensor, moved by the overflow-rate rule.

    Parameters
    ----------
    word_bits, signed:
        The fixed word of this tensor.
    frac_bits:
        Starting binary point; ``None`` lets the first observation set it (max-abs initializer).
    max_overflow_rate:
        The largest share of values allowed to reach the format's maximum (default 1e-4).
    update_interval:
        Observations (batches) between revisions of the scale (default 100).

    Members
    -------
    fmt:
        The current format.
    history:
        One record per revision: ``{"step", "frac_bits", "overflow_rate"}``.
    """

    def __init__(
        self,
        word_bits: int,
        signed: bool = True,
        frac_bits: int | None = None,
        max_overflow_rate: float = 1e-4,
        update_interval: int = 100,
    ) -> None:
        if not 0 <= max_overflow_rate < 1:
            raise FxpError(f"max_overflow_rate must be in [0, 1), got {max_overflow_rate}")
        if isinstance(update_interval, bool) or not isinstance(update_interval, int) or update_interval < 1:
            raise FxpError(f"update_interval must be a whole number >= 1, got {update_interval!r}")
        Format(word_bits, 0, signed)  # validates word_bits
        self.word_bits, self.signed = word_bits, signed
        self.frac_bits = frac_bits
        self.max_overflow_rate = max_overflow_rate
        self.update_interval = update_interval
        self.step = 0
        self.history: list[dict] = []
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._n = self._over = self._over_half = self._seen = self._zeros = 0

    @property
    def fmt(self) -> Format:
        if self.frac_bits is None:
            raise FxpError("this ScaleTracker has no scale yet: call init_max_abs(x) or observe(x) first")
        return Format(self.word_bits, self.frac_bits, self.signed)

    def init_max_abs(self, x: object) -> Format:
        """Set the binary point so that the largest magnitude of ``x`` just fits."""
        t = as_tensor(x)
        m = float(t.abs().max()) if t.numel() else 0.0
        m = _across_processes([m], torch.float64, "MAX")[0]  # every process starts from the same scale
        self.frac_bits = max_abs_frac_bits(m, self.word_bits, self.signed)
        return self.fmt

    def overflow_counts(self, x: torch.Tensor) -> tuple[int, int]:
        """Values reaching the maximum of the current format, and of the one with a bit fewer."""
        fmt = self.fmt
        ax = x.detach().abs()
        top = math.ldexp(float(fmt.raw_max), -fmt.frac_bits)
        return int(torch.count_nonzero(ax >= top)), int(torch.count_nonzero(ax >= top / 2))

    def observe(self, x: object, update: bool = True) -> bool:
        """Count overflows in ``x``; every ``update_interval`` calls apply the rule. True if it moved.

        With ``update=False`` only count: the caller applies the rule later with ``maybe_update``
        (training does so after each optimizer step, where all processes can agree on the counts).
        """
        t = as_tensor(x)
        if self.frac_bits is None:
            self.init_max_abs(t)
        over, over_half = self.overflow_counts(t)
        if over_half == 0 and t.numel() and not bool(t.detach().ne(0).any()):
            self._zeros += 1
        self._n += t.numel()
        self._over += over
        self._over_half += over_half
        self._seen += 1
        self.step += 1
        return self.maybe_update() if update else False

    def maybe_update(self) -> bool:
        """Apply the rule if ``update_interval`` observations have gathered. True if the point moved."""
        return self.update() if self._seen >= self.update_interval else False

    def update(self) -> bool:
        """Apply the overflow-rate rule to the counts gathered so far, then start counting anew.

        Under torch.distributed the counts of all processes are summed first, so every process
        moves its binary point the same way.
        """
        counts = _across_processes([self._n, self._over, self._over_half], torch.int64, "SUM")
        n = max(counts[0], 1)
        rate, rate_half = counts[1] / n, counts[2] / n
        old = self.frac_bits
        if rate > self.max_overflow_rate:
            self.frac_bits -= 1
        elif rate_half <= self.max_overflow_rate and self._zeros < self._seen:
            # (an interval of all-zero tensors says nothing about the range: keep the point)
            self.frac_bits += 1
        self.history.append({"step": self.step, "frac_bits": self.frac_bits, "overflow_rate": rate})
        self._reset_counts()
        return self.frac_bits != old

    def quantize(self, x: object, rounding: str = "nearest_even", overflow: str = "saturate", **kw) -> FxTensor:
        """Quantize ``x`` in the current format and count it toward the next revision."""
        t = as_tensor(x)
        if self.frac_bits is None:
            self.init_max_abs(t)
        q = quantize(t, self.fmt, rounding, overflow, **kw)
        self.observe(t)
        return q

    def state_dict(self) -> dict:
        return {
            "word_bits": self.word_bits,
            "signed": self.signed,
            "frac_bits": self.frac_bits,
            "max_overflow_rate": self.max_overflow_rate,
            "update_interval": self.update_interval,
            "step": self.step,
            "history": list(self.history),
            "counts": [self._n, self._over, self._over_half, self._seen, self._zeros],
        }

    def load_state_dict(self, state: dict) -> None:
        self.__init__(
            state["word_bits"], state["signed"], state["frac_bits"], state["max_overflow_rate"], state["update_interval"]
        )
        self.step = state["step"]
        self.history = list(state["history"])
        self._n, self._over, self._over_half, self._seen, self._zeros = state["counts"]
