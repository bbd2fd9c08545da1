"""On-disk caches of per-clip tensors (VAE latents, visual and text features) for training.

Layout of a cache folder:
  cache.json                 {"format": "foleyflow-cache/1", "kind", "fields", "producers", "ids", "shards", "info"}
  shard-00000.safetensors    each field stacked over up to `shard_size` clips: tensor "<field>" of shape (n, ...)
  extras.safetensors         optional tensors that belong to the whole cache (e.g. the empty-text features)

All clips of one cache have the same shape per field (FoleyWorld clips have one duration; users' longer videos are
cut into windows of the cache's duration before caching). `producers` records which checkpoints made the cache, as
{role: {"kind", "sha256", "path"}}; `require_producer` refuses a cache made by other weights, so a generator is never
trained on latents of one VAE and decoded with another. `info` holds free-form facts (duration_s, rates, latent
mean/std over the set...). Shards and cache.json are written atomically; an interrupted writer leaves no cache.json,
and a reader refuses a folder without one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from foleyflow.errors import CacheError
from foleyflow.hashing import file_sha256

FORMAT = "foleyflow-cache/1"
INDEX = "cache.json"


def producer_record(path: str | Path, kind: str) -> dict:
    """The record of a checkpoint that made (part of) a cache."""
    return {"kind": kind, "sha256": file_sha256(path), "path": str(Path(path).resolve())}


class CacheWriter:
    """Appends clips (dicts of tensors with fixed per-field shapes) and writes shards; `close()` writes cache.json."""

    def __init__(self, folder: str | Path, kind: str, producers: dict[str, dict], shard_size: int = 1024,
                 dtype: torch.dtype = torch.float16):
        self.folder = Path(folder)
        if (self.folder / INDEX).exists():
            raise CacheError(f"a cache already exists in {self.folder}; choose another folder or delete it")
        if not isinstance(shard_size, int) or not 1 <= shard_size <= 1_000_000:
            raise CacheError(f"shard size must be between 1 and 1000000 clips, got {shard_size}")
        if self.folder.exists() and not self.folder.is_dir():
            raise CacheError(f"cannot create the cache folder {self.folder}: it is a file")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create the cache folder {self.folder}: {e.strerror}") from None
        self.kind, self.producers, self.shard_size, self.dtype = kind, producers, shard_size, dtype
        self.ids: list[str] = []
        self.shards: list[dict] = []
        self.fields: dict[str, dict] = {}
        self._pending: dict[str, list[torch.Tensor]] = {}

    def add(self, clip_id: str, tensors: dict[str, torch.Tensor]) -> None:
        if not self.fields:
            self.fields = {k: {"shape": list(v.shape), "dtype": str(self.dtype if v.is_floating_point() else v.dtype)}
                           for k, v in tensors.items()}
            self._pending = {k: [] for k in tensors}
        if set(tensors) != set(self.fields):
            raise CacheError(f"clip {clip_id}: fields {sorted(tensors)} differ from the cache's {sorted(self.fields)}")
        for k, v in tensors.items():
            if list(v.shape) != self.fields[k]["shape"]:
                raise CacheError(f"clip {clip_id}: field '{k}' has shape {list(v.shape)}, "
                                 f"the cache holds {self.fields[k]['shape']}")
        for k, v in tensors.items():
            self._pending[k].append(v.detach().to("cpu", self.dtype if v.is_floating_point() else v.dtype))
        self.ids.append(clip_id)
        if len(self.ids) - sum(s["count"] for s in self.shards) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        n = len(next(iter(self._pending.values()), []))
        if n == 0:
            return
        name = f"shard-{len(self.shards):05d}.safetensors"
        from foleyflow.fileio import atomic_write

        with atomic_write(self.folder / name) as tmp:
            save_file({k: torch.stack(v) for k, v in self._pending.items()}, str(tmp))
        self.shards.append({"file": name, "count": n})
        self._pending = {k: [] for k in self._pending}

    def close(self, info: dict[str, Any] | None = None, extras: dict[str, torch.Tensor] | None = None) -> Path:
        """Finishes the cache. `extras` are tensors that belong to the whole cache (e.g. the empty-text features)."""
        from safetensors.torch import save_file

        from foleyflow.fileio import atomic_write, atomic_write_text

        self._flush()
        if extras:
            with atomic_write(self.folder / "extras.safetensors") as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in extras.items()}, str(tmp))
        index = {"format": FORMAT, "kind": self.kind, "fields": self.fields, "producers": self.producers,
                 "ids": self.ids, "shards": self.shards, "info": info or {}}
        atomic_write_text(self.folder / INDEX, json.dumps(index, indent=1))
        return self.folder


class Cache:
    """A finished cache. `load(field)` returns the stacked tensor (N, ...) in clip order (`ids`)."""

    def __init__(self, folder: str | Path, kind: str | None = None):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise CacheError(f"no finished cache in {self.folder} (missing {INDEX}); build it first")
        try:
            self.index = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise CacheError(f"{path} is corrupt") from None
        if self.index.get("format") != FORMAT:
            raise CacheError(f"{self.folder} has cache format {self.index.get('format')!r}, expected {FORMAT!r}")
        if kind is not None and self.index["kind"] != kind:
            raise CacheError(f"{self.folder} is a '{self.index['kind']}' cache, expected '{kind}'")
        self.ids: list[str] = self.index["ids"]
        self.fields: dict[str, dict] = self.index["fields"]
        self.producers: dict[str, dict] = self.index["producers"]
        self.info: dict[str, Any] = self.index["info"]

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, field: str) -> torch.Tensor:
        from safetensors.torch import load_file

        if field not in self.fields:
            raise CacheError(f"cache {self.folder} has no field '{field}' (has {sorted(self.fields)})")
        parts = []
        for shard in self.index["shards"]:
            try:
                parts.append(load_file(str(self.folder / shard["file"]))[field])
            except Exception as e:
                raise CacheError(f"cache shard {self.folder / shard['file']} is unreadable ({type(e).__name__})") \
                    from None
        return torch.cat(parts) if parts else torch.empty(0)

    def extras(self) -> dict[str, torch.Tensor]:
        """Whole-cache tensors written by `CacheWriter.close(extras=...)` (empty dict when there are none)."""
        from safetensors.torch import load_file

        path = self.folder / "extras.safetensors"
        return load_file(str(path)) if path.is_file() else {}

    def require_producer(self, role: str, sha256: str) -> None:
        """Refuses the cache unless `role` (e.g. "vae") was made by the checkpoint with this sha256."""
        rec = self.producers.get(role)
        if rec is None:
            raise CacheError(f"cache {self.folder} records no '{role}' producer")
        if rec["sha256"] != sha256:
            raise CacheError(f"cache {self.folder} was made by another {role} checkpoint ({rec['path']}, "
                             f"sha256 {rec['sha256'][:12]}), not the one in use ({sha256[:12]}); rebuild the cache")


def merge_caches(sources: list[str | Path], out: str | Path, *, summed_info: tuple[str, ...] = ("counts",),
                 joined_info: tuple[str, ...] = ("windows",), info_overrides: dict[str, Any] | None = None) -> Path:
    """Joins finished caches of one kind (e.g. made in parallel from parts of one manifest) into a new cache at `out`
    by moving their shards (the sources are removed); they must agree on kind, fields, producers, extras and info,
    except the info entries in `summed_info` (dicts of counts, added up), `joined_info` (dicts, joined) and
    `info_overrides` (set to the given values). Clip ids must be unique across the sources."""
    import shutil

    caches = [Cache(s) for s in sources]
    if not caches:
        raise CacheError("no caches to merge")
    first = caches[0]
    out = Path(out)
    if (out / INDEX).exists():
        raise CacheError(f"a cache already exists in {out}; choose another folder or delete it")
    ids: list[str] = []
    for c in caches[1:]:
        for what in ("kind", "fields", "producers"):
            if c.index[what] != first.index[what]:
                raise CacheError(f"cannot merge {c.folder} into {first.folder}: their {what} differ")
        free = set(summed_info) | set(joined_info) | set(info_overrides or {})
        if {k: v for k, v in c.info.items() if k not in free} != {k: v for k, v in first.info.items() if k not in free}:
            raise CacheError(f"cannot merge {c.folder} into {first.folder}: their info differs")
        ex, ex0 = c.extras(), first.extras()
        if set(ex) != set(ex0) or any(not torch.equal(ex[k], ex0[k]) for k in ex):
            raise CacheError(f"cannot merge {c.folder} into {first.folder}: their extras differ")
    for c in caches:
        ids += c.ids
    if len(set(ids)) != len(ids):
        raise CacheError("cannot merge caches that hold the same clip id twice")
    out.mkdir(parents=True, exist_ok=True)
    shards, info = [], dict(first.info)
    for key in summed_info:
        if key in info:
            info[key] = {k: sum(c.info[key].get(k, 0) for c in caches) for k in first.info[key]}
    for key in joined_info:
        if key in info:
            info[key] = {k: v for c in caches for k, v in c.info[key].items()}
    info.update(info_overrides or {})
    for c in caches:
        for shard in c.index["shards"]:
            name = f"shard-{len(shards):05d}.safetensors"
            shutil.move(str(c.folder / shard["file"]), str(out / name))
            shards.append({"file": name, "count": shard["count"]})
    if (first.folder / "extras.safetensors").is_file():
        shutil.copyfile(first.folder / "extras.safetensors", out / "extras.safetensors")
    index = {**first.index, "ids": ids, "shards": shards, "info": info}
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(out / INDEX, json.dumps(index, indent=1))
    for c in caches:
        shutil.rmtree(c.folder)
    return out
