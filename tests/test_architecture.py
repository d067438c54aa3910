"""The shape of the code, checked: no import cycles, packages that depend one way, one op in one place."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fxp", "sim", "hdl_gen")
# Who may import whom: the golden model and the simulators read the description and build units; the
# hardware generators read the description; fxp (training, the description) needs neither.
ALLOWED = {("sim", "fxp"), ("sim", "hdl_gen"), ("hdl_gen", "fxp")}
# the commands, which compose all three: the command line, and fxp demo (the whole flow in one command)
COMMAND_LINE = ("fxp.cli", "fxp.demo")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (inside functions too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `from fxp import fxpm` names a module; `from fxp.x import f` a member
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_no_import_cycle_between_modules():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules (the package's __init__ importing them)
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_packages_depend_one_way():
    bad = sorted(f"{a} imports {b}" for a, targets in _graph().items() for b in targets
                 if a not in COMMAND_LINE and a.split(".")[0] != b.split(".")[0]
                 and (a.split(".")[0], b.split(".")[0]) not in ALLOWED)
    assert not bad, bad


def _product_lines():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                yield path.relative_to(ROOT), n, line


def test_an_op_is_switched_on_only_in_its_class():
    """No ``op == "dense"`` / ``op in ("dense", ...)`` outside fxp/ops: the op classes are the one place."""
    from fxp.ops import OPS

    names = "|".join(OPS)
    dispatch = re.compile(rf"""(\bop\b|\["op"\])\s*(==|!=|\bin\b|\bnot in\b)\s*\(?\s*["']({names})["']""")
    found = [f"{p}:{n}" for p, n, line in _product_lines() if dispatch.search(line) and p.parts[:2] != ("fxp", "ops")]
    assert not found, found


def test_the_unit_kind_is_switched_on_in_one_place():
    """Only hdl_gen/engines.py maps a kind to a unit; nothing compares kinds with a literal."""
    from hdl_gen.engines import ENGINES

    kinds = "|".join(ENGINES)
    literal = re.compile(rf"""(==|!=|\bin\b)\s*\(?\s*["']({kinds})["']|["']({kinds})["']\s*(==|!=|if\b)""")
    found = [f"{p}:{n}" for p, n, line in _product_lines() if literal.search(line)]
    assert not found, found
