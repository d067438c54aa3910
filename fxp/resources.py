"""Files fxp ships beside its code: jinja2 templates and board profiles (read by :mod:`hdl_gen.boards`).

In a source checkout (or an editable install) they are the repository's ``templates/`` and
``boards/``; a wheel carries them as ``fxp/_data/templates`` and ``fxp/_data/boards``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2

from fxp.errors import FxpError

# The process umask, for the mode of the files write_atomic makes (mkstemp's are always 0600). It can
# only be read by setting it, which races with other threads: read it once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a file so that a crash or error never leaves it half-written.

    The new file replaces ``path`` itself: a symlink there is replaced, never followed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it, not private to this user
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def check_private(path: str | os.PathLike) -> None:
    """Refuse a cache file or folder that another user could have written: fxp runs code from them.

    A folder of ours that others can only read is made private (nobody else could have written in it).
    """
    if not hasattr(os, "getuid"):  # no POSIX owners and modes to check
        return
    st = os.stat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise FxpError(f"{path} is not owned by you alone (owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}), so fxp "
                       f"will not run code from it; remove it (rm -r {path}) and fxp rebuilds it")
    if os.path.isdir(path) and st.st_mode & 0o077:
        os.chmod(path, 0o700)


def private_dir(path: str | os.PathLike) -> Path:
    """The folder ``path``, made if missing, readable and writable by this user alone (checked)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise FxpError(f"{path} is not a folder; remove it (rm {path}) and fxp makes the folder") from None
    check_private(path)
    return path


def check_out_folder(out: str | os.PathLike, force: bool, marker: str, holds: str) -> Path:
    """An output folder, checked before any work: not a file (or a link to one), and not already holding
    an earlier result (``marker``, e.g. ``metrics.json``: ``holds`` says what in the message) unless
    ``force``. Other files in it are left alone."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FxpError(f"output {out} is a file; give a folder")
    if (out / marker).exists() and not force:
        raise FxpError(f"{out} already holds {holds}; choose another output folder or replace it (force=True, --force)")
    if out.is_symlink() or (out / marker).is_symlink():
        raise FxpError(f"output {out} is or holds a link; give a plain folder")
    return out


def read_npz(path: str | os.PathLike, members: tuple[str, ...], fix: str, writer: str) -> dict:
    """The arrays ``members`` of the ``.npz`` file ``path``, exactly those and no pickles; a missing,
    corrupt, truncated or foreign file raises FxpError naming it (``fix``: what to do, ``writer``: the
    function that writes such files)."""
    import zipfile

    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise FxpError(f"{path} is a single .npy array, not an .npz archive; {fix}")
        with z:
            if sorted(z.files) != sorted(members):
                raise FxpError(f"{path} holds members {sorted(z.files)}, expected {list(members)}; {fix}")
            return {name: z[name] for name in members}
    except FxpError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise FxpError(f"{path} cannot be opened ({e.strerror}); give a file written by {writer}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FxpError(f"{path} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                       f"{fix}") from None
