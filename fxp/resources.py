"""Files fxp ships beside its code: jinja2 templates and board profiles.

In a source checkout (or an editable install) they are the repository's ``templates/`` and
``boards/``; a wheel carries them as ``fxp/_data/templates`` and ``fxp/_data/boards``.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

import jinja2

from fxp.errors import FxpError


def data_dir(name: str) -> Path:
    """The shipped folder ``name`` ("templates" or "boards"), wherever this install keeps it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise FxpError(f"fxp's {name}/ folder is missing from this install ({here}); reinstall fxp")


def render(template: str, **context: object) -> str:
    """Render ``templates/<template>`` with ``context``; an undefined name is an error, not a blank."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template(template).render(**context)


def boards() -> dict[str, dict]:
    """Every board profile, by name (the file name without ``.toml``)."""
    return {p.stem: load_board(p.stem) for p in sorted(data_dir("boards").glob("*.toml"))}


def load_board(name: str) -> dict:
    path = data_dir("boards") / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in data_dir("boards").glob("*.toml")))
        raise FxpError(f"unknown board {name!r}; known boards: {known}")
    with open(path, "rb") as fh:
        profile = tomllib.load(fh)
    profile["name"] = name
    return profile


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a file so that a crash or error never leaves it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
