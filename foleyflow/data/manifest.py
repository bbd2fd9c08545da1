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
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from foleyflow.errors import FoleyError


class ManifestError(FoleyError):
    """A manifest is missing, malformed, or names files that do not exist."""


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


def read_manifest(path: str | Path, *, check_files: bool = True) -> list[ManifestEntry]:
    """Reads a JSONL manifest; paths become absolute. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    known = set(ManifestEntry.__dataclass_fields__) - {"extra"}
    entries, seen = [], set()
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                raise ManifestError(f"{path}:{lineno}: not a JSON object") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
                raise ManifestError(f"{path}:{lineno}: each line needs a string 'id'")
            if raw["id"] in seen:
                raise ManifestError(f"{path}:{lineno}: duplicate id '{raw['id']}'")
            seen.add(raw["id"])
            if not raw.get("video") and not raw.get("audio"):
                raise ManifestError(f"{path}:{lineno}: entry '{raw['id']}' has neither 'video' nor 'audio'")
            entry = ManifestEntry(**{k: v for k, v in raw.items() if k in known},
                                  extra={k: v for k, v in raw.items() if k not in known})
            for k in PATH_FIELDS:
                value = getattr(entry, k)
                if value:
                    p = Path(value) if Path(value).is_absolute() else path.parent / value
                    if check_files and not p.exists():
                        raise ManifestError(f"{path}:{lineno}: {k} file not found: {p}")
                    setattr(entry, k, str(p))
            entries.append(entry)
    if not entries:
        raise ManifestError(f"manifest {path} has no entries")
    return entries


def write_manifest(path: str | Path, entries: list[ManifestEntry], *, relative: bool = True) -> Path:
    """Writes entries as JSONL (atomically); with `relative`, paths under the manifest's folder become relative."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    base = path.parent.resolve() if relative else None
    with tmp.open("w") as f:
        for e in entries:
            f.write(json.dumps(e.to_json(base), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
