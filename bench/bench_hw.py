"""Hardware cost of the XNOR and int8 MAC units: LUT4, carry, FF, BRAM, DSP, Fmax on iCE40 UP5K and ECP5-85F.

    python bench/bench_hw.py [--quick] [--jobs 2] [--write-docs]

Cell counts come from Yosys synthesising each unit alone (``synth_ice40 -dsp`` / ``synth_ecp5``);
Fmax comes from nextpnr (``--seed 1``) placing and routing the unit inside a pin-feasible harness
(``hdl_gen.synth.harness``), whose shift register and output fold are therefore not in the counts.
Variants the units do not offer yet (constructor keywords they lack) are listed as n/a.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_json, write_section  # noqa: E402

from fxp.errors import FxpError  # noqa: E402
from hdl_gen import synth  # noqa: E402
from hdl_gen.adders import adder_trees  # noqa: E402
from hdl_gen.compressor import compressor_trees  # noqa: E402
from hdl_gen.gen import random_layer  # noqa: E402
from hdl_gen.mac import MacUnit  # noqa: E402
from hdl_gen.schedule import select  # noqa: E402
from hdl_gen.verilog import emit  # noqa: E402
from hdl_gen.xnor import XnorPopcountUnit  # noqa: E402

# name: (board, synth_<family> options or None for the board's, label). The ULX3S profile synthesises
# with -nowidelut (LUT4s only); Yosys' default also builds LUT5-LUT7 from a PFUMX/L6MUX21 over two to
# four LUT4s, measured beside it on some XNOR variants.
TARGETS = {"ice40": ("icebreaker", None, "iCE40 UP5K"), "ecp5": ("ulx3s-85f", None, "ECP5-85F"),
           "ecp5-widelut": ("ulx3s-85f", "", "ECP5-85F LUT5-7")}
WIDELUT_VARIANTS = [{}, {"pipeline": True}]  # the only XNOR variants also measured with Yosys' default
FMAX_TARGET = {"icebreaker": 60.0, "ulx3s-85f": 150.0}
LUT_TARGET = {"logic": 1.5, "bram": 2.5, "dp16kd": 2.5}  # LUT4 per synapse per cycle, XNOR with SIMD >= 64
DEFAULTS = {"weights_in": "logic", "pipeline": False, "popcount": "tree"}

# (MW, MH, PE, SIMD, place-and-route?): fully parallel (NF = SF = 1: weights are plain constants),
# then folded over outputs and inputs (NF = 4, SF = 2: a weight ROM and the rotating input vector appear).
XNOR_SIZES = [(64, 1, 1, 64, True), (64, 4, 4, 64, True), (64, 16, 16, 64, True), (64, 64, 64, 64, False),
              (128, 4, 1, 64, True), (128, 16, 4, 64, True), (128, 64, 16, 64, False), (64, 16, 4, 16, True)]
# "dp16kd": ECP5 block RAM instantiated with its output register (hdl_gen.dp16kd), ECP5 rows only
# table_bits: the block RAM holds tables of counts (512 words) instead of weight words; measured where
# something is folded or PE = 1 (unfolded wide units would need more block RAM than either device has)
XNOR_VARIANTS = [{}, {"pipeline": True}, {"weights_in": "bram"}, {"weights_in": "bram", "pipeline": True},
                 {"weights_in": "dp16kd", "pipeline": True}, {"popcount": "chain"},
                 {"weights_in": "bram", "table_bits": 9}, {"weights_in": "bram", "table_bits": 9, "pipeline": True},
                 {"weights_in": "dp16kd", "table_bits": 9, "pipeline": True}]
MAC_SIZES = [(16, 4, 1, 1, True), (16, 4, 1, 4, True), (32, 8, 2, 4, True), (64, 16, 4, 8, True)]
# requant "pow2": every multiplier 1 (dynamic fixed point), a shift and no multiply; "mult": 31-bit
# multipliers (gemmlowp), four 16x16 / 18x18 DSPs per output on top of one per product.
MAC_VARIANTS = [{}, {"pipeline": True}, {"weights_in": "bram", "pipeline": True},
                {"weights_in": "dp16kd", "pipeline": True}, {"requant": "pow2"}, {"requant": "pow2", "pipeline": True}]
ECP5_ONLY = {"dp16kd"}  # weights_in values that are ECP5 primitives
QUICK_XNOR = [(64, 1, 1, 64, True), (128, 4, 1, 64, True)]
QUICK_MAC = [(16, 4, 1, 1, True)]


def xnor_unit(mw: int, mh: int, pe: int, simd: int, **kw) -> XnorPopcountUnit:
    rng = np.random.default_rng(0)
    return XnorPopcountUnit(rng.integers(0, 2, (mh, mw)), rng.integers(0, mw + 2, mh), pe, simd, **kw)


def mac_unit(mw: int, mh: int, pe: int, simd: int, requant: str = "mult", **kw) -> MacUnit:
    model = random_layer("mac", mw, mh, 0)
    layer = model.layers[0]
    mult, shift = model.array(layer, "multiplier"), model.array(layer, "shift")
    if requant == "pow2":  # a shift that keeps the outputs live, so synthesis cannot drop the datapath
        mult, shift = np.ones_like(mult), np.full_like(shift, 9)
    return MacUnit(model.array(layer, "weights"), model.array(layer, "bias"), mult, shift, relu=layer["relu"],
                   acc_bits=layer["acc_bits"], pe=pe, simd=simd, **kw)


def build(kind: str, size: tuple, variant: dict):
    """The unit, or the reason it cannot be built (a keyword the unit does not take yet)."""
    cls, make = (XnorPopcountUnit, xnor_unit) if kind == "xnor" else (MacUnit, mac_unit)
    if not set(variant) - {"requant"} <= set(inspect.signature(cls).parameters):
        return None, "n/a (not yet supported)"
    try:
        return make(*size[:4], **variant), None
    except (TypeError, FxpError) as e:
        return None, f"n/a ({e})"


def measure(verilog: str, target: str, no_pnr: str | None, timeout: float) -> dict:
    """Cell counts for ``target``, and Fmax unless ``no_pnr`` gives the reason not to place and route."""
    board, opts, _ = TARGETS[target]
    t0 = time.perf_counter()
    stats = synth.synth_stats(verilog, "unit", board, timeout=timeout, synth_opts=opts, pack=True)
    out = {k: stats[k] for k in ("lut4", "carry", "ff", "dsp", "bram", "lut_sites")}
    out["fmax_mhz"], out["note"] = None, no_pnr or ""
    if no_pnr is None:
        try:
            synth.check_fit(stats, board)
            out["fmax_mhz"] = synth.place_and_route(verilog, "unit", board, freq_mhz=FMAX_TARGET[board],
                                                    timeout=timeout, synth_opts=opts)["fmax_mhz"]
        except FxpError as e:
            out["note"] = f"skipped P&R: {e}"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


class _Piece(wiring.Component):
    """One part of the XNOR datapath alone, output registered so synthesis keeps all of it."""

    def __init__(self, n_in: int, n_out: int, body) -> None:
        self._body = body
        super().__init__({"x": In(n_in), "y": Out(n_out)})

    def elaborate(self, platform) -> Module:
        m = Module()
        r = Signal(len(self.y))
        m.d.sync += r.eq(self._body(m, self.x))
        m.d.comb += self.y.eq(r)
        return m


def pieces(simd: int, nf: int, sf: int) -> list[tuple[str, _Piece]]:
    """Where the LUTs of a folded XNOR unit (PE = 1) go, part by part."""
    rng = np.random.default_rng(0)
    depth, abits, pc_w, acc_w = nf * sf, max(1, (nf * sf - 1).bit_length()), simd.bit_length(), (simd * sf).bit_length()
    init = [int.from_bytes(rng.bytes((simd + 7) // 8), "little") % (1 << simd) for _ in range(depth)]

    def rom(m, addr):
        m.submodules.rom = mem = Memory(shape=simd, depth=depth, init=init)
        port = mem.read_port(domain="comb")
        m.d.comb += port.addr.eq(addr)
        return port.data

    def in_rotate(m, x):  # the latched vector: load a new one, or rotate by one slice (the former design)
        vec, new = x[: simd * sf], x[simd * sf : 2 * simd * sf]
        return Mux(x[-1], new, vec.rotate_right(simd))

    def in_select(m, x):  # slice `sf` of the latched vector through a mux tree (schedule.FoldSchedule)
        return select([x.word_select(k, simd) for k in range(sf)], x[simd * sf:])

    return [
        (f"popcount of {simd} bits, carry-save compressor (compressor.compressor_trees, the unit's)",
         _Piece(simd, pc_w, lambda m, x: compressor_trees(m, [list(x)])[0])),
        (f"popcount of {simd} bits, balanced tree of adders (adders.adder_trees)",
         _Piece(simd, pc_w, lambda m, x: adder_trees([list(x)])[0])),
        (f"popcount of {simd} bits, chained sum", _Piece(simd, pc_w, lambda m, x: sum(x[i] for i in range(simd)))),
        (f"XNOR with a weight that changes every cycle (block RAM) + popcount of {simd}",
         _Piece(2 * simd, pc_w, lambda m, x: compressor_trees(m, [list(~(x[:simd] ^ x[simd:]))])[0])),
        (f"weight ROM {depth} x {simd} bits, asynchronous read (constant weights in LUTs)",
         _Piece(abits, simd, lambda m, x: rom(m, x))),
        (f"weight ROM {depth} x {simd} + XNOR with the input",
         _Piece(abits + simd, simd, lambda m, x: ~(rom(m, x[:abits]) ^ x[abits:]))),
        (f"input vector {sf} x {simd} bits: the slice for this cycle through an SF:1 mux (schedule.select)",
         _Piece(simd * sf + max(1, (sf - 1).bit_length()), simd, in_select)),
        (f"input vector {sf} x {simd} bits: load or rotate by a slice instead (the former design)",
         _Piece(2 * simd * sf + 1, simd * sf, in_rotate)),
        (f"accumulate ({pc_w} into {acc_w} bits) and compare with a threshold (the chained popcount's)",
         _Piece(pc_w + 2 * acc_w, acc_w + 1, lambda m, x: _acc_cmp(x, pc_w, acc_w))),
        (f"accumulate ({pc_w} into {acc_w + 1} bits) from the offset 2^W - T, the top bit out (the unit's)",
         _Piece(pc_w + acc_w + 1, acc_w + 1, lambda m, x: (x[:acc_w + 1] + x[acc_w + 1:])[:acc_w + 1])),
    ]


def _acc_cmp(x, pc_w: int, acc_w: int):
    total = x[:acc_w] + x[acc_w:acc_w + pc_w]
    return total.as_unsigned()[:acc_w] | ((total >= x[acc_w + pc_w:]) << acc_w)


def fmt_variant(variant: dict) -> tuple:
    """(weights_in, its label in the tables, pipeline, popcount) of a variant."""
    v = {**DEFAULTS, **variant}
    label = v["weights_in"] + (f", tables {v['table_bits']} b" if "table_bits" in v else "")
    return v["weights_in"], label, "on" if v["pipeline"] else "off", v["popcount"]


def measured(size: tuple, variant: dict) -> bool:
    """Count tables only where something is folded or PE = 1."""
    mw, mh, pe, simd = size[:4]
    return "table_bits" not in variant or pe == 1 or mh // pe * (mw // simd) > 1


def judge(rows: list[dict]) -> None:
    """Attach each row's targets as (text, met) pairs."""
    chain = {(r["kind"], tuple(r["size"]), r["target"]): r
             for r in rows if r.get("popcount") == "chain" and "lut4" in r}
    for r in rows:
        r["targets"] = []
        if "lut4" not in r:
            continue
        board, s = TARGETS[r["target"]][0], r["synapses"]
        if r["kind"] == "xnor" and r["popcount"] == "tree":
            if r["simd"] >= 64:
                limit = LUT_TARGET[r["weights_in"]]
                r["targets"].append((f"≤{limit} LUT4 sites/syn", r["lut_sites"] / s <= limit))
            ref = chain.get((r["kind"], tuple(r["size"]), r["target"]))
            if ref is not None and r["weights"] == "logic" and r["pipeline"] == "off":
                r["targets"].append((f"< chain ({ref['lut_sites']})", r["lut_sites"] < ref["lut_sites"]))
        if r["kind"] == "mac":  # one DSP per int8 product; a 31-bit requantization multiply takes four
            want = r["synapses"] + (0 if r["variant"].get("requant") == "pow2" else 4 * r["pe"])
            r["targets"].append((f"1 DSP/product ({want})", r["dsp"] == want))
        if r["kind"] == "xnor" and r.get("pipeline") == "on" and r["fmax_mhz"] is not None:
            r["targets"].append((f"≥{FMAX_TARGET[board]:g} MHz", r["fmax_mhz"] >= FMAX_TARGET[board]))


def markdown(rows: list[dict], piece_rows: list[dict], argv: list[str], wall_s: float) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in synth.tool_versions().items())
    lines = [f"Command: `{shlex.join(['python', 'bench/bench_hw.py', *argv])}`  ",
             (f"Tools: {versions}; nextpnr `--seed 1`, `--freq` = the Fmax target. "
              f"Wall time {wall_s / 60:.1f} min on 2 cores."), "",
             ("Where the numbers come from: LUT4, carry, FF, BRAM and DSP are Yosys' cell counts for the unit "
             "synthesised alone (`synth_ice40 -dsp`, `synth_ecp5 -nowidelut`: the board profiles). Fmax is nextpnr's for the unit inside a harness "
             "(inputs shifted in from one pin, outputs XOR-folded to one), so it is a placed and routed design; "
             "the harness' flip-flops are not in the counts. *LUT4 sites* are the LUT4 positions the unit "
             "occupies once nextpnr has packed it alone (`--pack-only`; `synth_stats(..., pack=True)`): on ECP5 the "
             "TRELLIS_COMB used (a CCU2C takes two), on iCE40 the logic cells whose LUT is in use (carry cells, "
             "whose LUT is a sum or a feed-through, inverters, anything of two or more inputs), not those whose "
             "LUT only passes one input to the flip-flop. "
             "Yosys' LUT4 count misses the cells a carry chain's entry and exit take, and inverters in front of "
             "carry chains: up to 37 % on these units. "
             "The divisor is PE × SIMD: synapses (XNOR) or products (MAC) per cycle. *ECP5-85F LUT5-7* rows "
             "synthesise with Yosys' default `synth_ecp5` (LUT5-7 built from PFUMX/L6MUX21 over LUT4s), with Fmax "
             "where pipelining is on. The largest sizes are synthesised only (P&R would take most of the "
             "time budget; the iCE40 cannot hold them anyway). Weights *bram*: block RAM that Yosys infers "
             "(a synchronous read); *dp16kd*: ECP5 DP16KD instantiated with its output register, which Yosys "
             "does not infer (`hdl_gen/dp16kd.py`), on ECP5 only; *tables 9 b*: the block RAM holds, instead of "
             "weight words, tables of 512 counts addressed by the fold index and a few inputs "
             "(`table_bits`, `hdl_gen/xnor.py`), so the XNORs and the compressor's first layers are in the RAM. "
             "Weights and thresholds "
             "are random (seed 0). Targets: XNOR ≤ 1.5 LUT4 sites/syn with constant weights and ≤ 2.5 with BRAM weights "
             "for SIMD ≥ 64, fewer LUT4 sites than the chained popcount; Fmax ≥ 60 MHz (iCE40) and ≥ 150 MHz (ECP5) "
              "with pipelining on; MAC one DSP per int8 product (its Fmax is reported, not judged). The MAC's *popcount* column gives its requantization "
              "instead: *pow2* (every multiplier 1: dynamic fixed point, a shift and no multiply) or *mult* "
              "(31-bit multipliers, each a 31×33-bit product that takes four 16×16 / 18×18 DSPs)."), ""]
    for kind, title in (("xnor", "XNOR-popcount unit (with thresholds)"), ("mac", "int8 MAC unit")):
        lines += [f"**{title}**", "",
                  ("| MW×MH | PE×SIMD | NF×SF | weights | pipeline | popcount | device | LUT4 | carry | LUT4 sites "
                   "| FF | BRAM | DSP | sites / (PE·SIMD) | Fmax MHz | targets |"),
                  "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in (r for r in rows if r["kind"] == kind):
            head = (f"| {r['mw']}×{r['mh']} | {r['pe']}×{r['simd']} | {r['nf']}×{r['sf']} | {r['weights']} "
                    f"| {r['pipeline']} | {r['popcount'] if kind == 'xnor' else r['variant'].get('requant', 'mult')} "
                    f"| {TARGETS[r['target']][2]} |")
            if "lut4" not in r:
                lines.append(f"{head} {r['note']} | | | | | | | | |")
                continue
            fmax = f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] is not None else short(r["note"])
            targets = "; ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in r["targets"]) or "—"
            lines.append(f"{head} {r['lut4']} | {r['carry']} | {r['lut_sites']} | {r['ff']} | {r['bram']} | {r['dsp']} "
                         f"| {r['lut_sites'] / r['synapses']:.2f} | {fmax} | {targets} |")
        lines.append("")
    if piece_rows:
        lines += [("**Where the LUTs of a folded XNOR unit go** (each part synthesised alone, output registered; "
                   "LUT4 sites, and per synapse: ÷ SIMD = 64)"), "",
                  "| part | " + " | ".join(f"{label} LUT4 sites (/syn)" for _, _, label in TARGETS.values()) + " |",
                  "|---|" + "---:|" * len(TARGETS)]
        for p in piece_rows:
            cells = " | ".join(f"{p[t]} ({p[t] / p['bits']:.2f})" for t in TARGETS)
            lines.append(f"| {p['name']} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two XNOR sizes and one MAC size (a few minutes)")
    ap.add_argument("--jobs", type=int, default=2, help="tool runs at once")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per tool run")
    ap.add_argument("--json", default="runs/bench/bench_hw.json")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()

    plan = [("xnor", s, v) for s in (QUICK_XNOR if args.quick else XNOR_SIZES) for v in XNOR_VARIANTS if measured(s, v)]
    plan += [("mac", s, v) for s in (QUICK_MAC if args.quick else MAC_SIZES) for v in MAC_VARIANTS]
    rows, tasks = [], []
    for kind, size, variant in plan:
        unit, reason = build(kind, size, variant)
        mw, mh, pe, simd, pnr = size
        weights_in, weights, pipeline, popcount = fmt_variant(variant)
        base = {"kind": kind, "size": list(size[:4]), "mw": mw, "mh": mh, "pe": pe, "simd": simd, "nf": mh // pe,
                "sf": mw // simd, "synapses": pe * simd, "multiplies": pe * simd + (0 if variant.get("requant") == "pow2" else pe) if kind == "mac" else None,
                "weights_in": weights_in, "weights": weights, "pipeline": pipeline, "popcount": popcount,
                "variant": variant}
        verilog = emit(unit, "unit") if unit is not None else None
        for target in TARGETS:
            if target == "ecp5-widelut" and (kind != "xnor" or variant not in WIDELUT_VARIANTS):
                continue
            if weights_in in ECP5_ONLY and target != "ecp5":
                continue
            rows.append(dict(base, target=target, note=reason or ""))
            if verilog is not None:  # with LUT5-7, Fmax only where its target applies
                no_pnr = ("not run (size)" if not pnr else
                          "not run (pipeline off)" if target == "ecp5-widelut" and pipeline == "off" else None)
                tasks.append((len(rows) - 1, verilog, target, no_pnr))
    piece_rows = []
    if not args.quick:
        for name, piece in pieces(64, 4, 2):
            verilog = emit(piece, "unit")
            piece_rows.append({"name": name, "bits": 64})
            for target in TARGETS:
                tasks.append((("piece", len(piece_rows) - 1), verilog, target, "part"))

    tasks.sort(key=lambda t: -len(t[1]) * (1 if t[3] else 4))  # the longest first: the two workers finish together
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(measure, v, t, no_pnr, args.timeout): (i, t) for i, v, t, no_pnr in tasks}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="synth + P&R", unit="run"):
            i, target = futures[fut]
            try:
                got = fut.result()
            except FxpError as e:
                got = {"note": f"failed: {e}"}
            if isinstance(i, tuple):
                piece_rows[i[1]][target] = got.get("lut_sites")
                continue
            rows[i].update(got)
            if got["note"].startswith(("skipped", "failed")):
                r = rows[i]
                tqdm.write(f"{kind_label(r)} on {TARGETS[target][2]}: {got['note']}")

    judge(rows)
    md = markdown(rows, [p for p in piece_rows if all(p.get(t) is not None for t in TARGETS)],
                  sys.argv[1:], time.perf_counter() - t0)
    print(md)
    save_json(args.json, {"tools": synth.tool_versions(), "rows": rows, "pieces": piece_rows})
    if args.write_docs:
        write_section("bench_hw", md)
    return 0


def short(note: str) -> str:
    """A table cell for a run without Fmax: the reason, without the advice the full message gives."""
    fit = re.search(r"does not fit \S+: it (needs [^;]+)", note)
    return f"does not fit: {fit.group(1)}" if fit else note.split(";")[0] or "—"


def kind_label(r: dict) -> str:
    return (f"{r['kind']} {r['mw']}x{r['mh']} PE={r['pe']} SIMD={r['simd']} "
            f"weights={r['weights']} pipeline={r['pipeline']} popcount={r['popcount']}")


if __name__ == "__main__":
    sys.exit(main())
