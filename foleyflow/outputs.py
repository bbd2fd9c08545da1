"""Which files a command may write: outputs are checked against every input and against files the user did not name.

foleyflow records its own media outputs inside them: `generate` and `mux` write the tag `OWN_TAG + " <command>"` as
the file's comment (a wav/flac INFO/Vorbis comment, the container's `comment` metadata of mp4/mov/mkv). A later run
may replace a file that carries such a tag (so re-running a command, `make demo` included, works); any other existing
file is refused with a one-line error unless the user passes `--overwrite`. An output that is the same file as an
input (same path, or a hard/soft link to it) is refused always, before any work.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from foleyflow.errors import FoleyError

OWN_TAG = "made by foleyflow"
AUDIO_SUFFIXES = (".wav", ".flac")


def own_tag(command: str) -> str:
    """The comment written into the outputs of `command` (e.g. "generate")."""
    return f"{OWN_TAG} {command}"


def read_tag(path: str | Path) -> str | None:
    """The comment of a media file (wav/flac or a video container), or None if it has none or cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() in AUDIO_SUFFIXES:
            import soundfile as sf

            with open(path, "rb") as fh, sf.SoundFile(fh) as f:
                return f.comment or None
        import av

        with open(path, "rb") as fh, av.open(fh, metadata_errors="replace") as c:
            meta = {k.lower(): v for k, v in c.metadata.items()}
        return meta.get("comment")
    except Exception:  # anything unreadable is simply "not ours"
        return None


def is_own_output(path: str | Path) -> bool:
    """Whether `path` is a media file that foleyflow recorded as its own output."""
    tag = read_tag(path)
    return bool(tag) and tag.startswith(OWN_TAG)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (the same path after resolving links, or the same inode)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None], *,
                  overwrite: bool = False) -> None:
    """Raises a one-line FoleyError if an output is one of the inputs, is a folder, or is an existing file that
    foleyflow did not record as its own output (unless `overwrite`). Call before any expensive work."""
    inputs = [Path(i) for i in inputs if i is not None]
    for out in map(Path, outputs):
        for inp in inputs:
            if same_file(out, inp):
                raise FoleyError(f"output {out} is also an input ({inp}); choose another output path")
        if out.is_dir():
            raise FoleyError(f"cannot write {out}: it is a folder")
        if (out.exists() or out.is_symlink()) and not overwrite and not is_own_output(out):
            raise FoleyError(f"{out} exists and was not written by foleyflow; choose another output path or pass "
                             "--overwrite to replace it")
