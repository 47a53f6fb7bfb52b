"""Atomic writes: a temporary sibling of the destination, then a rename into place.

A reader of the final path sees the old content or the complete new one, never a
partial file. On any exception (KeyboardInterrupt included) the temporary is removed
and nothing is left at the final path. The temporary is ``.{name}.XXXX.tmp`` in the
destination's folder, which is created when missing (same file system, so the rename
is atomic; a killed process leaves only dot-names ending in ``.tmp``).

Final modes follow the umask like an ordinary open() or mkdir: files 0o666 & ~umask,
folders 0o777 & ~umask, not the 0600 / 0700 of mkstemp / mkdtemp, which other users of
a shared cluster cannot read; ``new_dir`` gives every file written into the folder the
same modes (safetensors writes 0600).

    write_text(run_dir / "run.json", json.dumps(data))
    write_file(path, lambda tmp: save_file(tensors, tmp))
    with new_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["check_writable", "new_dir", "remove_stale_temps", "write_file", "write_text"]


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (as Path.write_text would); returns ``path``."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_file(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """``writer(tmp)`` writes a temporary sibling of ``path``, then it is renamed to ``path``.

    ``tmp`` exists (empty) when ``writer`` is called; ``writer`` writes it by that name,
    e.g. ``lambda tmp: frame.to_csv(tmp, index=False)``. A writer that adds a suffix to
    the name it is given (np.save, np.savez) must write to an open file instead. Returns
    ``path``.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(**_temp_args(path))
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def new_dir(out: str | Path, *, replace_empty: bool = True) -> Iterator[Path]:
    """A new temporary sibling folder of ``out``, renamed to ``out`` when the block ends.

    If the block raises, the folder is removed (with what was written into it) and
    ``out`` is left as it was. At the rename an existing empty ``out`` is replaced when
    ``replace_empty``; any other existing ``out`` raises OSError (FileExistsError,
    or the error of removing a non-empty folder or a file), so callers that want a
    friendlier error check ``out`` before they start writing.
    """
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(**_temp_args(out)))
    try:
        yield tmp
        _umask_modes(tmp)
        if out.exists() or out.is_symlink():
            if not replace_empty:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(out))
            out.rmdir()  # fails unless an empty folder
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove the ``.{name}.*.tmp`` siblings of ``out`` that a killed writer left behind.

    For commands that write one named output (prune, distill) and refuse an existing
    one: a temporary of the same name can only be left over from an earlier, killed run.
    Returns what was removed."""
    out = Path(out)
    stale = sorted(out.parent.glob(f".{out.name}.*.tmp")) if out.parent.is_dir() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def check_writable(folder: str | Path, what: str) -> None:
    """OSError-free check, before any long work, that files can be created in ``folder``
    (created when missing); PlsearchError naming ``what`` (the flag) otherwise."""
    from plsearch.errors import ConfigError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".plsearch-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(f"{what} {folder} is not writable ({exc.strerror or exc}); choose "
                          "a writable folder") from None


def _umask_modes(folder: Path) -> None:
    """Give ``folder`` and everything written into it the modes of an ordinary open() /
    mkdir under the umask: writers such as safetensors' save_file create 0600 files,
    which the rest of a group could not read. Execute bits of files are kept."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                executable = stat.S_IMODE(os.stat(path).st_mode) & 0o111
                os.chmod(path, (0o666 | executable) & ~mask)


def _temp_args(path: Path) -> dict[str, Any]:
    """mkstemp / mkdtemp arguments for a temporary sibling of ``path`` (parent created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"dir": path.parent, "prefix": f".{path.name}.", "suffix": ".tmp"}


def _umask() -> int:
    """The process umask (os.umask can only be read by setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
