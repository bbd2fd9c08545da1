"""Writing FoleyWorld clips: per clip an mp4 (H.264 + AAC stereo), a lossless wav of the true soundtrack, optional
per-source stems, the ground-truth JSON; per output folder a manifest and a dataset card.

Layout of an output folder DIR:
  DIR/manifest.jsonl                  one JSON object per line and clip, all splits (format below)
  DIR/README.md                       dataset card: class counts, event-density and duration histograms
  DIR/<split>/config.yaml             the WorldConfig that made the split
  DIR/<split>/<id>.mp4 .wav .json     video with sound, float32 wav of the mix, ground truth
  DIR/<split>/<id>.stems/<key>.wav    per-source stems (with `stems: true`), keys as in the truth's events
  DIR/shards/<split>-NNNNNN.tar       optional WebDataset-style shards (`write_shards`): per clip the members
                                      <id>.mp4, <id>.wav, <id>.json, <id>.caption.txt, <id>.cot.txt

Manifest format (the same one users write for their own data): UTF-8 JSON Lines; each line an object with
  id (str, unique), video (path, relative to the manifest's folder or absolute), duration_s (float),
  and optionally audio (wav/flac path), caption (str), cot (str, the four-part chain of thought in one line),
  split (str), truth (ground-truth JSON path), alive (str), classes (list of sound classes), num_discrete (int),
  max_concurrent_sources (int), offscreen (bool: some source is heard but not seen).
Splits draw seeds from disjoint ranges (config.split_seed_range); a clip's id is "<split>_<absolute seed>", and the
same seed and config always give byte-identical wav and JSON files.
"""
from __future__ import annotations

import json
from pathlib import Path

from foleyflow.errors import ConfigError, FoleyError, MediaError
from foleyflow.manifest import MANIFEST
from foleyflow.world.config import SPLIT_SEED_SPAN, SPLITS, WorldConfig, split_seed_range

REQUIRED_KEYS = ("id", "video", "duration_s")


def write_wav(path: Path, audio, sample_rate: int, subtype: str) -> Path:
    """media.write_audio, made byte-reproducible: libsndfile stamps float wavs' PEAK chunk with the wall-clock
    time, so its timestamp field is zeroed (readers ignore it; the peak values themselves are kept)."""
    from foleyflow.media import write_audio

    write_audio(path, audio, sample_rate, subtype=subtype)
    with open(path, "r+b") as f:
        head = f.read(512)
        at = head.find(b"PEAK")
        if at >= 0:
            f.seek(at + 12)     # "PEAK", chunk size (4), version (4), then the timestamp (4)
            f.write(b"\0\0\0\0")
    return path


def clip_id(split: str, seed: int) -> str:
    return f"{split}_{seed:09d}"


def load_bank(cfg: WorldConfig):
    """The recorded sound bank for cfg (rendered once with fluidsynth, then cached)."""
    from foleyflow.world.soundbank import load_soundbank

    return load_soundbank(cfg.sample_rate, soundfont=cfg.soundfont, cache_dir=cfg.cache_dir or None)


def make_clip(out_dir: str | Path, split: str, seed: int, cfg: WorldConfig, bank=None) -> dict:
    """Makes clip `seed` (absolute) of `split` into out_dir/<split>/ and returns its manifest row (paths relative
    to out_dir)."""
    from foleyflow.media import write_video
    from foleyflow.world.mixer import render_scene_audio
    from foleyflow.world.physics import plan_clip
    from foleyflow.world.render import render_frames
    from foleyflow.world.text import write_texts
    from foleyflow.world.truth import build_truth, write_truth

    out_dir = Path(out_dir)
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    cid = clip_id(split, seed)
    scene, sim = plan_clip(seed, split, cfg)
    audio = render_scene_audio(sim.events, cfg.duration_s, cfg.sample_rate, scene.room, cfg.binaural, seed, bank,
                               soundfont=cfg.soundfont, hrtf_path=cfg.hrtf, cache_dir=cfg.cache_dir or None)
    truth = build_truth(cid, scene, sim, audio.events, cfg)
    truth["stems"] = {"keys": list(audio.stem_of_event), "gain": round(float(audio.gain), 6)}
    texts = write_texts(truth)
    truth["text"] = texts
    frames = render_frames(scene, sim, cfg)
    write_wav(folder / f"{cid}.wav", audio.mix, cfg.sample_rate, cfg.wav_subtype)
    write_video(folder / f"{cid}.mp4", frames, cfg.fps, audio=audio.mix, sample_rate=cfg.sample_rate, crf=cfg.crf)
    row = {"id": cid, "video": f"{split}/{cid}.mp4", "audio": f"{split}/{cid}.wav", "duration_s": cfg.duration_s,
           "caption": texts["caption"], "cot": texts["cot"], "alive": texts["alive"], "split": split,
           "truth": f"{split}/{cid}.json", "classes": sorted({e.sound_class for e in audio.events}),
           "num_discrete": truth["stats"]["num_discrete"],
           "max_concurrent_sources": truth["stats"]["max_concurrent_sources"],
           "offscreen": any(not e.on_screen for e in audio.events)}
    if cfg.stems:
        stem_dir = folder / f"{cid}.stems"
        stem_dir.mkdir(exist_ok=True)
        for key, x in sorted(audio.stems.items()):
            write_wav(stem_dir / f"{key}.wav", x, cfg.sample_rate, cfg.wav_subtype)
        row["stems"] = f"{split}/{cid}.stems"
    write_truth(folder / f"{cid}.json", truth)
    return row


_WORKER: dict = {}


def _init_worker(out_dir, split, cfg, bank):
    _WORKER.update(out_dir=out_dir, split=split, cfg=cfg, bank=bank)


def _init_pool_worker(out_dir, split, cfg, bank):
    """A forked worker inherits the CLI's SIGTERM handler (foleyflow.cli raises Terminated); the pool ends its
    workers with SIGTERM when it closes, which printed a Terminated traceback under a run that had succeeded."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(out_dir, split, cfg, bank)


def _work(seed: int) -> dict:
    w = _WORKER
    try:
        return make_clip(w["out_dir"], w["split"], seed, w["cfg"], w["bank"])
    except FoleyError as e:
        return {"error": str(e)}


def check_out_dir(out_dir: Path) -> None:
    """Refuses output folders inside this source checkout (outputs never go into the source tree)."""
    import foleyflow

    root = Path(foleyflow.__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        out = out_dir.resolve()
        if out == root or root in out.parents:
            raise ConfigError(f"output folder {out_dir} is inside the source tree {root}; choose a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise MediaError(f"output path {out_dir} exists and is not a folder")


def make_split(out_dir: str | Path, split: str, n: int, cfg: WorldConfig, seed: int = 0, workers: int = 1,
               progress: bool = False) -> list[dict]:
    """Makes clips seed..seed+n-1 of `split` (seed = offset inside the split's range) with `workers` processes;
    updates the manifest and dataset card; returns the new manifest rows in seed order."""
    out_dir = Path(out_dir)
    start, _ = split_seed_range(split)
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if seed < 0 or seed + n > SPLIT_SEED_SPAN:
        raise ConfigError(f"--seed must be in [0, {SPLIT_SEED_SPAN - n}] for {n} clips, got {seed}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_out_dir(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    from foleyflow.config import save_config

    save_config(cfg, out_dir / split / "config.yaml")
    bank = load_bank(cfg)
    seeds = [start + seed + i for i in range(n)]
    if workers == 1 or n == 1:
        _init_worker(out_dir, split, cfg, bank)
        rows = [_work(s) for s in _progress(seeds, progress)]
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_pool_worker, initargs=(out_dir, split, cfg, bank)) as pool:
            rows = list(_progress(pool.imap(_work, seeds, chunksize=1), progress, total=n))
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        raise FoleyError(errors[0])
    update_manifest(out_dir, rows)
    write_card(out_dir)
    return rows


def write_shards(out_dir: str | Path, split: str, clips_per_shard: int) -> list[Path]:
    """Packs the split's clips (manifest order) into WebDataset-style tar shards of `clips_per_shard` clips each, in
    DIR/shards/. Members of a clip share its id as the key; the loose files stay where they are."""
    import io
    import tarfile

    if clips_per_shard < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {clips_per_shard}")
    out_dir = Path(out_dir)
    rows = [r for r in read_manifest(out_dir / MANIFEST) if r.get("split") == split]
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    for old in shard_dir.glob(f"{split}-*.tar"):
        old.unlink()
    paths = []
    for k in range(0, len(rows), clips_per_shard):
        path = shard_dir / f"{split}-{k // clips_per_shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for r in rows[k:k + clips_per_shard]:
                for key, ext in (("video", "mp4"), ("audio", "wav"), ("truth", "json")):
                    tar.add(out_dir / r[key], arcname=f"{r['id']}.{ext}")
                for name in ("caption", "cot"):
                    data = r.get(name, "").encode()
                    info = tarfile.TarInfo(f"{r['id']}.{name}.txt")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def _progress(it, on: bool, total: int | None = None):
    if not on:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, unit="clip")


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a FoleyWorld manifest (a file or a dataset folder; format in this module's docstring) as written,
    read by foleyflow.manifest.read_manifest_rows; also checks FoleyWorld's required keys. ManifestError (a
    MediaError) otherwise."""
    from foleyflow.manifest import ManifestError, manifest_path, read_manifest_rows

    rows = []
    for lineno, row in read_manifest_rows(path):
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise ManifestError(f"{manifest_path(path)}:{lineno}: missing key '{missing[0]}' "
                                f"(required: {', '.join(REQUIRED_KEYS)})")
        rows.append(row)
    return rows


def update_manifest(out_dir: Path, rows: list[dict]) -> Path:
    path = out_dir / MANIFEST
    old = {r["id"]: r for r in read_manifest(path)} if path.is_file() else {}
    old.update({r["id"]: r for r in rows})
    order = {s: i for i, s in enumerate(SPLITS)}
    merged = sorted(old.values(), key=lambda r: (order.get(r.get("split"), 99), r["id"]))
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in merged))
    return path


def _hist(values, edges, label) -> list[str]:
    import numpy as np

    counts, _ = np.histogram(values, bins=edges)
    top = max(1, counts.max())
    lines = [f"| {label} | clips | |", "|---|---:|---|"]
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        lines.append(f"| {a:g}-{b:g} | {c} | {'#' * int(round(30 * c / top))} |")
    return lines


def write_card(out_dir: Path) -> Path:
    """The dataset card README.md, from the manifest: splits, class counts, histograms."""
    import numpy as np

    from foleyflow.events import SOUND_CLASSES

    rows = read_manifest(out_dir / MANIFEST)
    per_split = {s: sum(r.get("split") == s for r in rows) for s in SPLITS}
    counts = {c: sum(c in r.get("classes", ()) for r in rows) for c in SOUND_CLASSES}
    dens = [r.get("num_discrete", 0) / r["duration_s"] for r in rows]
    durs = [r["duration_s"] for r in rows]
    lines = ["# FoleyWorld dataset", "",
             "Procedural audio-visual clips with exact ground truth, made by `foleyflow world make`. Every clip has an",
             "mp4 (H.264 + AAC stereo), a float32 wav of its soundtrack, a ground-truth JSON and three texts; see",
             "`manifest.jsonl` and docs/foleyworld.md in the foleyflow repository for the formats.", "",
             f"{len(rows)} clips, {sum(durs) / 3600:.2f} hours.", "", "| split | clips |", "|---|---:|"]
    lines += [f"| {s} | {c} |" for s, c in per_split.items() if c]
    lines += ["", "## Clips per sound class (clips in which the class sounds)", "", "| class | clips |", "|---|---:|"]
    lines += [f"| {c} | {counts[c]} |" for c in SOUND_CLASSES]
    off = sum(bool(r.get("offscreen")) for r in rows)
    lines += ["", f"Clips with an off-screen source: {off}; clips with 3 or more sources sounding at once: "
              f"{sum(r.get('max_concurrent_sources', 0) >= 3 for r in rows)}."]
    lines += ["", "## Event density (discrete events per second)", ""]
    lines += _hist(dens, np.array([0, 0.5, 1, 2, 3, 4, 6, 8, 100.0]), "events/s")
    lines += ["", "## Duration (seconds)", ""]
    hi = max(durs) if durs else 1
    lines += _hist(durs, np.unique(np.round(np.linspace(0, hi + 1e-6, 6), 2)), "seconds")
    lines += ["", "Licences: recorded sounds come from the FluidR3 GM soundfont (MIT); binaural renders use the MIT KEMAR",
              "HRTF (free to use with citation)."]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
