"""foleyflow.hashing.file_sha256: the digest, and the memo that skips re-hashing an unchanged file."""
from __future__ import annotations

import hashlib
import json
import os

from foleyflow.hashing import file_sha256


def test_digest_equals_hashlib_and_memo_follows_changes(tmp_path):
    f = tmp_path / "blob.bin"
    data = os.urandom(3 << 20 | 5)  # more than one read chunk
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    memo = tmp_path / "memo"
    memo.mkdir()
    assert file_sha256(f, memo_dir=memo) == hashlib.sha256(data).hexdigest()
    (key, value), = json.loads((memo / "hashes.json").read_text()).items()
    assert value == hashlib.sha256(data).hexdigest() and str(f.resolve()) in key
    (memo / "hashes.json").write_text(json.dumps({key: "remembered"}))
    assert file_sha256(f, memo_dir=memo) == "remembered"  # an unchanged file is not read again
    f.write_bytes(b"other")
    assert file_sha256(f, memo_dir=memo) == hashlib.sha256(b"other").hexdigest()  # size/mtime changed
