import json

import pytest
import torch

from foleyflow.data.cache import Cache, CacheWriter, producer_record
from foleyflow.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from foleyflow.errors import CacheError


def test_manifest_roundtrip_and_errors(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    write_manifest(tmp_path / "m.jsonl", [ManifestEntry(id="a", video=str(tmp_path / "a.mp4"), caption="hi",
                                                        extra={"tag": 1})])
    assert json.loads((tmp_path / "m.jsonl").read_text())["video"] == "a.mp4"
    (e,) = read_manifest(tmp_path / "m.jsonl")
    assert e.video == str(tmp_path / "a.mp4") and e.caption == "hi" and e.extra == {"tag": 1}
    for text, words in [('{"id": "a", "video": "missing.mp4"}', "not found"), ("nope", "not a JSON"),
                        ('{"video": "a.mp4"}', "needs a string 'id'"), ('{"id": "a"}', "neither"),
                        ('{"id": "a", "video": "a.mp4"}\n{"id": "a", "video": "a.mp4"}', "duplicate"), ("", "no entries")]:
        (tmp_path / "bad.jsonl").write_text(text)
        with pytest.raises(ManifestError, match=words):
            read_manifest(tmp_path / "bad.jsonl")


def test_cache_roundtrip_shards_and_producers(tmp_path):
    ck = tmp_path / "vae.safetensors"
    ck.write_bytes(b"weights")
    prod = {"vae": producer_record(ck, "vae")}
    w = CacheWriter(tmp_path / "c", "latents", prod, shard_size=2)
    data = [torch.randn(5, 3) for _ in range(5)]
    for i, d in enumerate(data):
        w.add(f"clip{i}", {"mean": d, "std": d.abs()})
    with pytest.raises(CacheError, match="shape"):
        w.add("bad", {"mean": torch.randn(4, 3), "std": torch.randn(4, 3)})
    with pytest.raises(CacheError, match="no finished cache"):
        Cache(tmp_path / "c")
    w.close(info={"duration_s": 8.0})
    c = Cache(tmp_path / "c", kind="latents")
    assert c.ids == [f"clip{i}" for i in range(5)] and len(c.index["shards"]) == 3
    torch.testing.assert_close(c.load("mean"), torch.stack(data).half())
    c.require_producer("vae", prod["vae"]["sha256"])
    with pytest.raises(CacheError, match="another vae checkpoint"):
        c.require_producer("vae", "0" * 64)
    with pytest.raises(CacheError, match="expected 'features'"):
        Cache(tmp_path / "c", kind="features")
    with pytest.raises(CacheError, match="already exists"):
        CacheWriter(tmp_path / "c", "latents", prod)


def test_merge_caches_joins_shards_and_refuses_mismatches(tmp_path):
    import pytest
    import torch

    from foleyflow.data.cache import Cache, CacheWriter, merge_caches
    from foleyflow.errors import CacheError

    def make(name, ids, sha="a", manifest="m"):
        w = CacheWriter(tmp_path / name, "features", {"enc": {"kind": "x", "sha256": sha, "path": "p"}}, shard_size=2)
        for i in ids:
            w.add(i, {"v": torch.full((3,), float(len(i)))})
        return w.close(info={"manifest": manifest, "counts": {"clips": len(ids)}, "windows": {i: [i, 0.0] for i in ids},
                             "duration_s": 8.0}, extras={"empty": torch.zeros(2)})

    a, b = make("a", ["x", "yy", "zzz"]), make("b", ["wwww"], manifest="other")
    out = merge_caches([a, b], tmp_path / "ab", info_overrides={"manifest": "all"})
    c = Cache(out)
    assert c.ids == ["x", "yy", "zzz", "wwww"] and c.load("v")[:, 0].tolist() == [1, 2, 3, 4]
    assert c.info["counts"] == {"clips": 4} and set(c.info["windows"]) == set(c.ids) and c.info["manifest"] == "all"
    assert torch.equal(c.extras()["empty"], torch.zeros(2)) and not a.exists() and not b.exists()
    with pytest.raises(CacheError, match="producers differ"):
        merge_caches([make("c", ["q"]), make("d", ["r"], sha="b")], tmp_path / "cd")
    with pytest.raises(CacheError, match="info differs"):
        merge_caches([make("e", ["q"]), make("f", ["r"], manifest="z")], tmp_path / "ef")
    with pytest.raises(CacheError, match="same clip id"):
        merge_caches([make("g", ["q"]), make("h", ["q"])], tmp_path / "gh")
