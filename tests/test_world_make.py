"""FoleyWorld clip writing: determinism of wav and JSON, manifest format, dataset card, the CLI (make, preview, bad
arguments). Makes only a few short, small clips."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from foleyflow.world.config import WorldConfig, split_seed_range

pytest.importorskip("foleyflow.world.mixer")
CFG = WorldConfig(duration_s=2.0, size=64)
SOURCE_ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache"}


def source_tree_listing() -> dict[str, int]:
    """{relative path: mtime_ns} of the source checkout, without git, venv and Python caches. Compared before and
    after a command, it shows whether the command wrote into the source tree, whatever the tree held before (a
    `make demo` leaves out/ behind; that must not make this test fail)."""
    import os

    out = {}
    for folder, dirs, files in os.walk(SOURCE_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in dirs + files:
            path = Path(folder) / name
            out[str(path.relative_to(SOURCE_ROOT))] = path.lstat().st_mtime_ns
    return out


@pytest.fixture(scope="module")
def bank():
    if not Path(CFG.soundfont).is_file():
        pytest.skip(f"soundfont not installed at {CFG.soundfont} (apt-get install fluid-soundfont-gm)")
    from foleyflow.world.make import load_bank

    return load_bank(CFG)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory, bank):
    from foleyflow.world.make import make_split

    out = tmp_path_factory.mktemp("world")
    make_split(out, "train", 2, CFG)
    make_split(out, "test-offscreen", 1, dataclasses.replace(CFG, stems=True), seed=5)
    return out


def test_same_seed_and_config_give_identical_wav_and_json(tmp_path, bank):
    from foleyflow.world.make import make_clip

    seed = split_seed_range("test-hard")[0] + 3
    a = make_clip(tmp_path / "a", "test-hard", seed, CFG, bank)
    b = make_clip(tmp_path / "b", "test-hard", seed, CFG, bank)
    assert a == b
    for key in ("audio", "truth"):
        assert (tmp_path / "a" / a[key]).read_bytes() == (tmp_path / "b" / b[key]).read_bytes()
    c = make_clip(tmp_path / "c", "test-hard", seed + 1, CFG, bank)
    assert (tmp_path / "c" / c["audio"]).read_bytes() != (tmp_path / "a" / a["audio"]).read_bytes()


def test_manifest_rows_point_at_real_files(world_dir):
    import av
    import soundfile as sf

    from foleyflow.world.make import REQUIRED_KEYS, read_manifest

    rows = read_manifest(world_dir / "manifest.jsonl")
    assert [r["split"] for r in rows] == ["train", "train", "test-offscreen"]
    assert rows[2]["id"] == f"test-offscreen_{split_seed_range('test-offscreen')[0] + 5:09d}"
    for r in rows:
        assert set(REQUIRED_KEYS) <= set(r) and r["duration_s"] == 2.0
        assert r["cot"].startswith("Semantic: ") and "Temporal: " in r["cot"] and r["caption"]
        for key in ("video", "audio", "truth"):
            assert not Path(r[key]).is_absolute() and (world_dir / r[key]).is_file()
        x, sr = sf.read(str(world_dir / r["audio"]), always_2d=True)
        assert sr == 16000 and x.shape == (32000, 2)
        with av.open(str(world_dir / r["video"])) as c:
            assert c.streams.video[0].frames == 50 and c.streams.video[0].width == 64
            assert c.streams.audio[0].channels == 2
        truth = json.loads((world_dir / r["truth"]).read_text())
        assert truth["id"] == r["id"] and truth["text"]["cot"] == r["cot"]
        assert all(e["offset_s"] is not None for e in truth["events"])
        assert sorted({e["sound_class"] for e in truth["events"]}) == r["classes"]
    stems = sorted((world_dir / rows[2]["stems"]).glob("*.wav"))
    assert stems and any(s.stem.startswith("source_") for s in stems)


def test_manifest_updates_replace_rows_and_reject_bad_lines(world_dir, tmp_path):
    from foleyflow.errors import MediaError
    from foleyflow.world.make import read_manifest, update_manifest

    rows = read_manifest(world_dir)
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / "manifest.jsonl").write_text((world_dir / "manifest.jsonl").read_text())
    update_manifest(copy, [dict(rows[0], caption="changed")])
    again = read_manifest(copy)
    assert len(again) == 3 and again[0]["caption"] == "changed"
    bad = tmp_path / "bad.jsonl"
    for text, why in (('{"id": "a", "video": "a.mp4"}\n', "missing key 'duration_s'"), ("[1]\n", "JSON object"),
                      ('{"id": "a", "video": "a.mp4", "duration_s": 1}\n' * 2, "duplicate id"), ("{\n", "JSON")):
        bad.write_text(text)
        with pytest.raises(MediaError, match=why):
            read_manifest(bad)


def test_shards_hold_every_clip_of_the_split(world_dir):
    import tarfile

    from foleyflow.world.make import read_manifest, write_shards

    shards = write_shards(world_dir, "train", 1)
    ids = [r["id"] for r in read_manifest(world_dir) if r["split"] == "train"]
    assert [p.name for p in shards] == ["train-000000.tar", "train-000001.tar"]
    for path, cid in zip(shards, ids):
        with tarfile.open(path) as tar:
            names = tar.getnames()
            assert names == [f"{cid}.{e}" for e in ("mp4", "wav", "json", "caption.txt", "cot.txt")]
            assert tar.extractfile(f"{cid}.wav").read() == (world_dir / "train" / f"{cid}.wav").read_bytes()


def test_dataset_card_counts_classes(world_dir):
    from foleyflow.events import SOUND_CLASSES
    from foleyflow.world.make import read_manifest

    card = (world_dir / "README.md").read_text()
    rows = read_manifest(world_dir)
    assert "| train | 2 |" in card and "| test-offscreen | 1 |" in card
    for c in SOUND_CLASSES:
        assert f"| {c} | {sum(c in r['classes'] for r in rows)} |" in card
    assert "Event density" in card and "Duration" in card
    assert f"Clips with an off-screen source: {sum(r['offscreen'] for r in rows)};" in card and rows[2]["offscreen"]


def test_cli_make_and_preview(run_cli, tmp_path, bank):
    out = tmp_path / "w"
    r = run_cli("world", "make", "--out", out, "--split", "val", "--n", "2", "--seed", "10", "--set", "duration_s=1.5",
                "--set", "size=64", "--workers", "2", "--shard-size", "5")
    assert r.code == 0, r.err
    assert "made 2 val clips" in r.out and "wrote 1 shards" in r.out
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    # Worker processes make the same bytes as a plain call.
    from foleyflow.world.make import make_clip

    seed = split_seed_range("val")[0] + 11
    row = make_clip(tmp_path / "direct", "val", seed, dataclasses.replace(CFG, duration_s=1.5), bank)
    for key in ("audio", "truth"):
        assert (tmp_path / "direct" / row[key]).read_bytes() == (out / row[key]).read_bytes()
    r = run_cli("world", "preview", out, "-o", tmp_path / "sheet.png")
    assert r.code == 0, r.err
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size[0] > 600


@pytest.mark.parametrize("args, words", [
    (["make", "--out", "{tmp}", "--split", "nope", "--n", "1"], "unknown split"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "0"], "at least 1"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "two"], "invalid int"),
    (["make", "--out", "{tmp}", "--split", "train"], "--n"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "1", "--seed", "-4"], "--seed"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "1", "--set", "colour=red"], "unknown config key"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "1", "--set", "size=129"], "size"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "1", "--config", "{tmp}/none.yaml"], "not found"),
    (["make", "--out", "{src}/out", "--split", "train", "--n", "1"], "source tree"),
    (["make", "--out", "{tmp}", "--split", "train", "--n", "1", "--set", "soundfont=/no/such.sf2"], "apt"),
    (["make", "--out", "{tmp}", "--split", "val", "--n", "1", "--set", "binaural=true", "--set", "hrtf=/no/x.sofa"],
     "libmysofa"),
    (["make", "--out", "{tmp}", "--split", "val", "--n", "1", "--shard-size", "-1"], "--shard-size"),
    (["preview", "{tmp}/nothing"], "manifest not found"),
])
def test_cli_bad_arguments_give_one_line_errors(run_cli, tmp_path, args, words):
    args = [a.format(tmp=tmp_path, src=SOURCE_ROOT) for a in args]
    before = source_tree_listing()
    r = run_cli("world", *args)
    assert r.code != 0
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.err
    assert source_tree_listing() == before  # a refused command writes nothing into the source tree


def test_pool_workers_end_quietly_on_the_pools_sigterm(monkeypatch):
    """The pool closes its workers with SIGTERM; a worker that kept the CLI's handler (raise Terminated) printed a
    traceback under a successful `world make --workers 2`. Workers restore the default action."""
    import signal

    from foleyflow.world import make

    def cli_handler(signum, frame):  # what foleyflow.cli installs
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, cli_handler)
    try:
        monkeypatch.setattr(make, "_WORKER", {})
        make._init_pool_worker("out", "train", None, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert make._WORKER["split"] == "train"
    finally:
        signal.signal(signal.SIGTERM, previous)
