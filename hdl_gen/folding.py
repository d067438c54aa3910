"""Folding a network: PE and SIMD per layer, FINN's rule (the slowest stage sets the frame rate).

A layer of ``MH x MW`` takes ``NF x SF = (MH / PE) x (MW / SIMD)`` cycles per input vector, times the
vectors it takes per frame (a convolution: one per output position); the input stage takes
``pixels / pixels_per_word``, and a sliding window one cycle per pixel of its padded frame. For a
target of ``T`` cycles per frame each layer gets the smallest ``PE x SIMD`` (divisors only) that meets
it, so no hardware is spent on a layer that would only wait for a slower one. A folding can also be given by hand (a JSON file), and is then checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fxp.errors import FxpError


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Layer:
    """A compute layer as folding sees it: its unit, its matrix, and the vectors it takes per frame."""

    name: str
    kind: str  # the unit that builds it
    mw: int
    mh: int
    weight_bits: int  # bits of one weight as the unit stores it
    windows: int = 1  # input vectors per frame: 1, or a convolution's output positions
    table_entries: int = 0  # the weights' codebook, where the unit stores indices into one


@dataclass(frozen=True)
class LayerFold:
    """One compute layer's folding and what it costs (estimates, by the unit that builds it)."""

    layer: Layer
    pe: int
    simd: int

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def cycles(self) -> int:
        layer = self.layer
        return layer.windows * (layer.mh // self.pe) * (layer.mw // self.simd)

    def estimate(self) -> dict:
        """LUT4, FF, DSP and stored weight bits, as the unit that builds the layer estimates them."""
        from hdl_gen.engines import engine

        layer = self.layer
        return engine(layer.kind).estimate(layer.mw, layer.mh, self.pe, self.simd, layer.weight_bits,
                                           layer.table_entries)


@dataclass(frozen=True)
class Folding:
    """PE and SIMD of every compute layer, and the input's pixels per transfer."""

    layers: tuple[LayerFold, ...]
    pixels: int  # pixels of one frame
    pixels_per_word: int
    fixed: tuple[tuple[str, int], ...] = ()  # stages of a fixed rate (sliding windows) and their cycles per frame

    @property
    def input_cycles(self) -> int:
        return self.pixels // self.pixels_per_word

    @property
    def cycles_per_frame(self) -> int:
        """The slowest stage's cycles per frame: the predicted steady-state frame period."""
        return max([self.input_cycles, *(f.cycles for f in self.layers), *(c for _, c in self.fixed)])

    def table(self) -> list[dict]:
        rows = [{"layer": "input", "kind": "pixels", "mw": self.pixels, "mh": self.pixels, "pe": self.pixels_per_word,
                 "simd": 1, "cycles_per_frame": self.input_cycles, "lut4": 0, "ff": 0, "dsp": 0, "weight_bits": 0}]
        for f in self.layers:
            rows.append({"layer": f.name, "kind": f.layer.kind, "mw": f.layer.mw, "mh": f.layer.mh, "pe": f.pe,
                         "simd": f.simd, "cycles_per_frame": f.cycles, **f.estimate()})
        for name, cycles in self.fixed:
            rows.append({"layer": name, "kind": "window", "mw": 0, "mh": 0, "pe": 1, "simd": 1,
                         "cycles_per_frame": cycles, "lut4": 0, "ff": 0, "dsp": 0, "weight_bits": 0})
        return rows

    def to_json(self) -> dict:
        return {"pixels_per_word": self.pixels_per_word,
                "layers": {f.name: {"pe": f.pe, "simd": f.simd} for f in self.layers}}

    def markdown(self) -> str:
        head = "| layer | unit | MW | MH | PE | SIMD | cycles/frame | LUT4 (est.) | FF (est.) | DSP | weight bits |\n"
        head += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        rows = "".join(f"| {r['layer']} | {r['kind']} | {r['mw']} | {r['mh']} | {r['pe']} | {r['simd']} | "
                       f"{r['cycles_per_frame']} | {r['lut4']} | {r['ff']} | {r['dsp']} | {r['weight_bits']} |\n"
                       for r in self.table())
        return (head + rows + f"\nPredicted: one frame every {self.cycles_per_frame} cycles (the slowest stage), "
                f"{1 / self.cycles_per_frame:.3g} frames per cycle.\n")


def _fold_layer(layer: Layer, target: int) -> LayerFold:
    """The smallest PE x SIMD (divisors only) that meets ``target`` cycles; among equals, the wider SIMD."""
    meeting = [f for f in (LayerFold(layer, pe, simd) for pe in divisors(layer.mh) for simd in divisors(layer.mw))
               if f.cycles <= target]
    if not meeting:  # even fully parallel, one vector a cycle: a convolution's positions set the pace
        return LayerFold(layer, layer.mh, layer.mw)
    return min(meeting, key=lambda f: (f.pe * f.simd, -f.simd))


def fold(layers: list[Layer], pixels: int, target: int, fixed: list[tuple[str, int]] = (),
         pixels_per_word: int | None = None) -> Folding:
    """Fold ``layers`` and the input for ``target`` cycles per frame; ``fixed`` stages keep their rate, and
    ``pixels_per_word`` is forced where the first layer reads whole pixels."""
    if target < 1:
        raise FxpError(f"the target must be at least 1 cycle per frame, got {target}")
    per_word = pixels_per_word or min(d for d in divisors(pixels) if pixels // d <= target or d == pixels)
    return Folding(tuple(_fold_layer(layer, target) for layer in layers), pixels, per_word, tuple(fixed))


# Of a device's resources a folding may plan to use: nextpnr places and routes designs beyond this with
# growing difficulty, and the estimates leave out the streams between the engines.
FILL = 0.8
RESOURCES = {"lut4": "LUT4", "dsp": "DSP", "bram_bits": "block RAM bits"}


def usage(folding: Folding, weights_in: str = "logic") -> dict[str, int]:
    """What ``folding`` is estimated to take of ``RESOURCES``: the engines' LUT4 and DSPs, and their folded
    weights in block RAM (``weights_in`` ``bram``/``dp16kd``) or in LUT4 ROMs (``logic``: 16 bits a LUT4)."""
    total = {"lut4": 0, "dsp": 0, "bram_bits": 0}
    for f in folding.layers:
        cost = f.estimate()
        total["lut4"] += cost["lut4"]
        total["dsp"] += cost["dsp"]
        if weights_in == "logic":
            total["lut4"] += -(-cost["weight_bits"] // 16)
        else:
            total["bram_bits"] += cost["weight_bits"]
    return total


def _heaviest(folding: Folding, resource: str, weights_in: str) -> str:
    """The layer of ``folding`` that takes the most of ``resource``."""
    return max(folding.layers, key=lambda f: usage(Folding((f,), 1, 1), weights_in)[resource]).name


def fold_to_fit(layers: list[Layer], pixels: int, capacity: dict[str, int], where: str,
                fixed: list[tuple[str, int]] = (), pixels_per_word: int | None = None,
                weights_in: str = "logic") -> Folding:
    """The fastest folding whose :func:`usage` stays within :data:`FILL` of ``capacity`` (``RESOURCES``
    counts of the device ``where`` names): every frame period a folding can have is tried, fastest first.
    A model that does not fit even fully folded (PE = SIMD = 1) is refused, naming the resource, the
    layer that takes most of it, and the need against what the device has."""
    floor = max([1, *(c for _, c in fixed)])  # a sliding window takes a padded pixel a cycle at best
    periods = sorted({LayerFold(layer, pe, simd).cycles for layer in layers for pe in divisors(layer.mh)
                      for simd in divisors(layer.mw)} | {floor, pixels})
    for target in (t for t in periods if t >= floor):
        folding = fold(layers, pixels, target, fixed, pixels_per_word)
        used = usage(folding, weights_in)
        if all(used[k] <= FILL * capacity[k] for k in RESOURCES):
            return folding
    slowest = fold(layers, pixels, max(periods), fixed, pixels_per_word)
    used = usage(slowest, weights_in)
    short = next(k for k in RESOURCES if used[k] > FILL * capacity[k])
    fix = ("; weights in block RAM (--weights-in bram) free the LUT4 their ROMs take" if short == "lut4"
           and weights_in == "logic" and capacity["bram_bits"] else "")
    raise FxpError(f"the model does not fit {where} at any folding: fully folded it needs {used[short]:,} "
                   f"{RESOURCES[short]} (layer {_heaviest(slowest, short, weights_in)} the most), the device has "
                   f"{capacity[short]:,} ({FILL:.0%} usable){fix}; use a larger board or a smaller model")


def from_file(path: str | Path, layers: list[Layer], pixels: int, fixed: list[tuple[str, int]] = ()) -> Folding:
    """A folding written by hand (``{"pixels_per_word": P, "layers": {name: {"pe": .., "simd": ..}}}``) or
    an earlier network's sidecar (its ``folding``), checked against the model."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FxpError(f"folding file {path} cannot be read ({type(e).__name__}: {e}); write "
                       '{"pixels_per_word": P, "layers": {"fc1": {"pe": 4, "simd": 8}, ...}}') from None
    spec = spec.get("folding", spec) if isinstance(spec, dict) else spec  # a network sidecar holds one
    return from_spec(spec, layers, pixels, f"folding file {path}", fixed)


def from_sidecar(sidecar: dict, layers: list[Layer], fixed: list[tuple[str, int]] = ()) -> Folding:
    """The folding a network folder was made with."""
    return from_spec(sidecar["folding"], layers, sidecar["pixels"], "the network's sidecar", fixed)


def from_spec(spec: object, layers: list[Layer], pixels: int, where: str, fixed: list[tuple[str, int]] = ()) -> Folding:
    """``{"pixels_per_word": P, "layers": {name: {"pe": .., "simd": ..}}}`` checked against ``layers``."""
    try:
        given, per_word = spec["layers"], spec.get("pixels_per_word", 1)
        names = [layer.name for layer in layers]
        unknown = sorted(set(given) - set(names))
    except (KeyError, TypeError, AttributeError) as e:
        raise FxpError(f"{where} is not a folding ({type(e).__name__}: {e}); write "
                       '{"pixels_per_word": P, "layers": {"fc1": {"pe": 4, "simd": 8}, ...}}') from None
    if unknown or set(names) - set(given):
        raise FxpError(f"{where} names layers {sorted(given)}; the model's compute layers are {names}")
    if not isinstance(per_word, int) or isinstance(per_word, bool) or per_word < 1 or pixels % per_word:
        raise FxpError(f"{where}: pixels_per_word {per_word!r} does not divide the {pixels} pixels of a frame; use "
                       f"one of {divisors(pixels)}")
    folds = []
    for layer in layers:
        entry = given[layer.name] if isinstance(given[layer.name], dict) else {}
        pe, simd = entry.get("pe"), entry.get("simd")
        for what, v, n, dim in (("pe", pe, layer.mh, "MH"), ("simd", simd, layer.mw, "MW")):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1 or n % v:
                raise FxpError(f"{where}: layer {layer.name} {what}={v!r} does not divide {dim}={n}; use one of "
                               f"{divisors(n)}")
        folds.append(LayerFold(layer, pe, simd))
    return Folding(tuple(folds), pixels, per_word, tuple(fixed))
