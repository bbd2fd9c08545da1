"""File digests: the one SHA-256 of a file that checkpoints, caches, bundles and the sound bank record.

A leaf module (standard library only), so every layer can use it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_sha256(path: str | Path, *, memo_dir: str | Path | None = None) -> str:
    """Hex SHA-256 of a file's bytes. With `memo_dir`, the digest is remembered in memo_dir/hashes.json under
    (resolved path, size, mtime), so a big file that does not change is hashed once."""
    path = Path(path)
    memo = Path(memo_dir) / "hashes.json" if memo_dir is not None else None
    key = known = None
    if memo is not None:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        known = {}
        if memo.is_file():
            try:
                known = json.loads(memo.read_text())
            except (OSError, ValueError):
                known = {}
        if key in known:
            return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        known[key] = digest
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(memo, json.dumps(known))
    return digest
