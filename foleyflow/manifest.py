"""Manifests: the list of clips a command works on, as JSON Lines (one JSON object per line).

Fields (FoleyWorld writes all of them; users' own data needs only `id` and `video` or `audio`):
  id          unique string, used to name cache entries and outputs
  video       path of the video file (relative paths are relative to the manifest's folder)
  audio       path of a wav/flac with the true soundtrack (optional when the video has audio)
  duration_s  clip duration in seconds (optional; probed when missing)
  caption     short text description (optional)
  cot         chain of thought text "Semantic: ... Temporal: ... Aesthetic: ... Spatial: ..." (optional)
  split       train / val / test / ... (optional)
  truth       path of a ground-truth JSON (FoleyWorld only; optional)
Unknown fields are kept in `extra`, so tools can add their own.

One reader for every layer: `read_manifest_rows` gives the lines as written (FoleyWorld's own tools rewrite them),
`read_manifest` typed entries with absolute paths. A leaf module, below foleyflow.world (which writes manifests)
and foleyflow.data (which reads them).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from foleyflow.errors import MediaError


class ManifestError(MediaError):
    """A manifest is missing, malformed, or names files that do not exist."""


MANIFEST = "manifest.jsonl"  # a dataset folder's manifest (FoleyWorld writes one per folder)
PATH_FIELDS = ("video", "audio", "truth")


@dataclass
class ManifestEntry:
    id: str
    video: str | None = None
    audio: str | None = None
    duration_s: float | None = None
    caption: str | None = None
    cot: str | None = None
    split: str | None = None
    truth: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, relative_to: Path | None = None) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None and k != "extra"}
        if relative_to is not None:
            for k in PATH_FIELDS:
                if k in d:
                    p = Path(d[k])
                    d[k] = str(p.relative_to(relative_to)) if p.is_relative_to(relative_to) else str(p)
        d.update(self.extra)
        return d


def manifest_path(path: str | Path) -> Path:
    """The manifest file: `path` itself, or path/manifest.jsonl for a dataset folder."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def read_manifest_rows(path: str | Path) -> list[tuple[int, dict]]:
    """[(line number, row)] of a JSONL manifest (a file or a dataset folder), rows as written (paths not resolved).
    Checks that each line is a JSON object with a unique string 'id' and a 'video' or 'audio'; errors name the file
    and line."""
    path = manifest_path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    rows, seen = [], set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a UTF-8 text file (a manifest is JSON Lines)") from None
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e.strerror}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise ManifestError(f"{path}:{lineno}: not a JSON object") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{path}:{lineno}: not a JSON object")
        if not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ManifestError(f"{path}:{lineno}: each line needs a string 'id'")
        if raw["id"] in seen:
            raise ManifestError(f"{path}:{lineno}: duplicate id '{raw['id']}'")
        seen.add(raw["id"])
        _check_types(raw, f"{path}:{lineno}")
        if not raw.get("video") and not raw.get("audio"):
            raise ManifestError(f"{path}:{lineno}: entry '{raw['id']}' has neither 'video' nor 'audio'")
        rows.append((lineno, raw))
    if not rows:
        raise ManifestError(f"manifest {path} has no entries")
    return rows


def _check_types(raw: dict, where: str) -> None:
    """Known fields have the documented types (a ManifestError names the line and field otherwise)."""
    import math

    for k in ("video", "audio", "truth", "caption", "cot", "split"):
        if raw.get(k) is not None and not isinstance(raw[k], str):
            raise ManifestError(f"{where}: field '{k}' must be a string, got {type(raw[k]).__name__}")
    for k in PATH_FIELDS:
        if raw.get(k) and "\0" in raw[k]:
            raise ManifestError(f"{where}: field '{k}' holds a NUL character")
    d = raw.get("duration_s")
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d <= 0):
        raise ManifestError(f"{where}: field 'duration_s' must be a positive number, got {d!r}")


def read_manifest(path: str | Path, *, check_files: bool = True) -> list[ManifestEntry]:
    """Reads a JSONL manifest (a file or a dataset folder) as entries; paths become absolute. Errors name the file
    and line."""
    path = manifest_path(path)
    known = set(ManifestEntry.__dataclass_fields__) - {"extra"}
    entries = []
    for lineno, raw in read_manifest_rows(path):
        entry = ManifestEntry(**{k: v for k, v in raw.items() if k in known},
                              extra={k: v for k, v in raw.items() if k not in known})
        for k in PATH_FIELDS:
            value = getattr(entry, k)
            if value:
                # absolute even when the manifest's path is relative (callers may change folders, e.g. workers)
                p = Path(value) if Path(value).is_absolute() else path.parent.absolute() / value
                if check_files and not p.exists():
                    raise ManifestError(f"{path}:{lineno}: {k} file not found: {p}")
                setattr(entry, k, str(p))
        entries.append(entry)
    return entries


def write_manifest(path: str | Path, entries: list[ManifestEntry], *, relative: bool = True) -> Path:
    """Writes entries as JSONL (atomically); with `relative`, paths under the manifest's folder become relative."""
    from foleyflow.fileio import atomic_write_text

    path = Path(path)
    base = path.parent.resolve() if relative else None
    return atomic_write_text(path, "".join(json.dumps(e.to_json(base), ensure_ascii=False) + "\n" for e in entries))
