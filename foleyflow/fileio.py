"""Safe file writing: every result foleyflow writes goes through `atomic_write`.

`atomic_write(path)` yields a temporary path in the target's folder whose name is unique per process and call
(`.STEM.<pid>-<random>.tmp<suffix>`, the suffix kept so that writers that choose a format by extension still work;
a STEM that is not plain ASCII becomes "out", so libraries that cannot open non-UTF-8 names still can).
When the block ends normally the temporary is flushed to disk (fsync) and renamed over `path` (os.replace, atomic on
POSIX within one file system); when it ends with any exception, KeyboardInterrupt and SystemExit included, the
temporary is removed and `path` is untouched. So an interrupted or failed write leaves the previous result (or no
file) and no temporary, and two processes writing the same target never share a temporary.

`safe_component` checks a name taken from a manifest or another file before it becomes part of a path.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from foleyflow.errors import FoleyError

TEMP_MARK = ".tmp"  # every temporary name is ".<target name>.<pid>-<hex>.tmp<suffix>"


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name next to `path`, unique per process and call, keeping `path`'s suffix."""
    path = Path(path)
    # libraries that take str paths (soundfile, PyAV) cannot open non-UTF-8 names: keep only plain ASCII parts
    stem = path.stem if path.stem.isascii() and path.stem.isprintable() else "out"
    suffix = path.suffix if path.suffix.isascii() and path.suffix.isprintable() else ""
    return path.with_name(f".{stem[:80]}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_MARK}{suffix}")


def is_temp_name(name: str) -> bool:
    """Whether a file name looks like a temporary of `atomic_write` (for tests and clean-up)."""
    return name.startswith(".") and TEMP_MARK in name


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, sync: bool = True) -> Iterator[Path]:
    """Context manager: yields a temporary path to write to; on success it replaces `path` atomically.

    A folder at `path` is never replaced (FoleyError). The writer may create the temporary itself (soundfile, PyAV,
    safetensors) or not at all (then nothing happens). Cleans up on every exception, BaseException included.
    """
    path = Path(path)
    if path.is_dir():
        raise FoleyError(f"cannot write {path}: it is a folder")
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.exists():
            if sync:
                _fsync(tmp)
            os.replace(tmp, path)
            if sync:
                _fsync(path.parent)
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes `data` to `path` atomically."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Writes `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def remove_temporaries(folder: str | Path) -> int:
    """Removes leftovers of `atomic_write` (of any process) directly inside `folder`; returns how many. Only for
    folders a command owns exclusively (a writer of another process may still be using its temporary)."""
    n = 0
    for p in Path(folder).iterdir() if Path(folder).is_dir() else ():
        if is_temp_name(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    return n


def safe_component(name: str, what: str = "id") -> str:
    """Returns `name` if it can be used as one file name inside a folder: a non-empty str without path separators,
    NUL, '..' or '.' alone, a leading '-' or '.'... (hidden files are foleyflow's temporaries), and at most 200
    characters, encodable for the file system. Raises FoleyError otherwise (naming the value)."""
    bad = None
    if not isinstance(name, str) or not name:
        bad = "it is empty or not a string"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        bad = "it holds a path separator"
    elif "\0" in name:
        bad = "it holds a NUL character"
    elif name in (".", "..") or name.startswith("."):
        bad = "it starts with '.'"
    elif len(name) > 200:
        bad = "it is longer than 200 characters"
    else:
        try:
            os.fsencode(name)
        except UnicodeError:
            bad = "it cannot be encoded as a file name"
    if bad:
        raise FoleyError(f"{what} {name!r} cannot be used as a file name: {bad}")
    return name


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path`, with symlinks and '..' resolved, lies inside `folder` (resolved)."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError, ValueError):
        return False
