"""Unit options, declared once: the command line, the checks and the sidecar are derived from these.

Each hardware unit lists its options (``OPTIONS``, a tuple of :class:`Option`); an option shared by
several units is one object used by all of them. ``fxp gen unit`` turns every option of every
unit into a flag, :func:`check_options` refuses an option the chosen unit does not take (naming the
units that do) or a value outside its choices or range, and the sidecar records the unit's values.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxp.errors import FxpError


@dataclass(frozen=True)
class Option:
    """One keyword option of a unit's constructor.

    Parameters
    ----------
    name: the keyword (``weights_in``); the command-line flag is ``--weights-in``.
    type: ``bool`` (a switch), ``str`` (one of ``choices``) or ``int`` (in ``lo..hi``).
    default: the value when not given (None: off).
    help: one sentence for ``--help``.
    choices, lo, hi: the allowed values.
    """

    name: str
    type: type
    default: object
    help: str
    choices: tuple[str, ...] = ()
    lo: int | None = None
    hi: int | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: object) -> object:
        """``value`` if this option allows it, else an error naming the option and what it allows."""
        if value is None and self.default is None:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise FxpError(f"{self.name} is true or false, got {value!r}")
        elif self.type is str:
            if value not in self.choices:
                raise FxpError(f"{self.name}={value!r} is not known; use {' or '.join(self.choices)}")
        elif isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise FxpError(f"{self.name} must be a whole number from {self.lo} to {self.hi}, got {value!r}")
        return value


PIPELINE = Option("pipeline", bool, False, "pipeline registers for Fmax (more latency, same results)")
WEIGHTS_IN = Option("weights_in", str, "logic",
                    "where the weights are held: constant logic (LUTs), block RAM that synthesis infers (bram), or "
                    "ECP5 DP16KD block RAM through its output register (dp16kd; ECP5 only, Icarus/Verilator only)",
                    choices=("logic", "bram", "dp16kd"))
CODEBOOK = Option("codebook", bool, False,
                  "store each weight as its index in the layer's table of distinct weights (a k-means shared layer of a "
                  "qat run, exported per tensor: log2(k) bits a weight), looked up beside each product; a layer whose table would need as many "
                  "bits as its values keeps the values")
POPCOUNT = Option("popcount", str, "tree",
                  "a carry-save compressor (tree) or the naive chained sum (chain)", choices=("tree", "chain"))
TABLE_BITS = Option("table_bits", int, None,
                    "with weights in block RAM: it holds tables of counts, each addressed by N bits (fold index and "
                    "a few inputs), instead of weight words: fewer LUTs, more block RAM (9: 512-word tables; at most "
                    "9 with dp16kd)", lo=1, hi=16)


def check_options(unit_class, options: dict, all_units: dict) -> dict:
    """``options`` checked against ``unit_class.OPTIONS``: an option it does not take is refused, naming the
    units of ``all_units`` (kind → class) that take it. Returns the options with their checked values."""
    own = {o.name: o for o in unit_class.OPTIONS}
    for name, value in options.items():
        if name not in own:
            takers = [kind for kind, cls in all_units.items() if any(o.name == name for o in cls.OPTIONS)]
            if value == next((o.default for cls in all_units.values() for o in cls.OPTIONS if o.name == name), None):
                continue  # left at its default: nothing asked of this unit
            raise FxpError(f"{name} is an option of the {' and '.join(takers) or 'no'} unit, not of the "
                           f"{unit_class.kind} unit; drop it")
    return {name: own[name].check(value) for name, value in options.items() if name in own}


def refused_quietly(init):
    """For a unit's ``__init__``: a unit refused while it is built (bad options, a layer it cannot take)
    does not warn later that it was never elaborated (Amaranth's ``UnusedElaboratable``, raised when
    the half-built object is collected): the error already said what was wrong."""
    import functools

    @functools.wraps(init)
    def checked(self, *args, **kwargs) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._MustUse__silence = True  # Amaranth's per-object switch for that check (amaranth/_unused.py)
            raise

    return checked
