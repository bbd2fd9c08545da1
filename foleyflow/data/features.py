"""Features caches: the condition features of every clip of a manifest, computed once for training
(`foleyflow extract-features`; format in docs/caches.md).

Windows, frame decoding, visual and text encoding live in `foleyflow.conditioning`, which `FoleyPipeline` calls too,
so a generator sees at inference exactly the features it was trained on. The first window of clip `id` is cached as
`id`, window k >= 1 as `id@k` (so a latents cache of the first W seconds of each clip pairs with it); every window's
start (on the video stream's timeline) is recorded in the cache's info.

The names below from foleyflow.conditioning are re-exported for older imports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from foleyflow.conditioning import (MIN_TAIL_S, Window, cache_windows, cot_parts, decode_window,  # noqa: F401
                                    encode_texts, encode_window, frame_size_mode, load_text_encoder,
                                    text_encoder_record, window_conditions)
from foleyflow.errors import FoleyError


# ---------------------------------------------------------------------------------------------------- extraction
def extract_features(manifest: str | Path, out_dir: str | Path, semantic_ckpt: str | Path, sync_ckpt: str | Path, *,
                     duration_s: float = 8.0, text_cfg=None, device: str = "cpu", text_encoder=None,
                     progress: Callable | None = None, monolithic: bool = False) -> Path:
    """Builds a features cache (format in docs/caches.md) for every clip of a JSONL manifest.

    Fields per window: visual (int(d * 8), Dv), sync (sync tokens, Ds), caption and cot (output_len, 384), has_video
    (1,). Extras: empty_text (output_len, 384). Info: duration_s, rates, text_len, windows {id: [clip id, start_s]}.
    Producers: semantic_encoder and sync_encoder (checkpoint sha256), text_encoder (config hash).
    `monolithic`: also the field monolithic (output_len, 384): the single-paragraph form of each clip's ground-truth
    chain of thought (`foleyflow.cot.monolithic_text` of its `truth`, worded as the clip's cot; issue 19's ablation),
    encoded as a plain text; every entry needs a truth (checked before any model loads).
    `progress(n_done, n_total)` is called after each clip."""
    from foleyflow.data.cache import CacheWriter, producer_record
    from foleyflow.manifest import read_manifest
    from foleyflow.media import probe
    from foleyflow.models.av_ssl import SEMANTIC_KIND, SYNC_KIND, load_semantic_encoder, load_sync_encoder
    from foleyflow.models.generator import GeneratorConfig
    from foleyflow.models.text_encoder import TextEncoderConfig

    if not 0.64 <= duration_s <= 600:
        raise FoleyError(f"--duration must be between 0.64 and 600 s, got {duration_s}")
    from foleyflow.data.cache import INDEX
    from foleyflow.errors import CacheError

    if (Path(out_dir) / INDEX).exists():  # before any model is loaded
        raise CacheError(f"a cache already exists in {out_dir}; choose another folder or delete it")
    entries = read_manifest(manifest)
    paragraphs = monolithic_texts(entries) if monolithic else None
    for what, path in (("semantic encoder", semantic_ckpt), ("sync encoder", sync_ckpt)):
        if not Path(path).is_file():
            from foleyflow.errors import CheckpointError
            raise CheckpointError(f"{what} checkpoint not found: {path}")
    text_cfg = text_cfg or TextEncoderConfig()
    producers = {"semantic_encoder": producer_record(semantic_ckpt, SEMANTIC_KIND),
                 "sync_encoder": producer_record(sync_ckpt, SYNC_KIND), "text_encoder": text_encoder_record(text_cfg)}
    semantic = load_semantic_encoder(semantic_ckpt).to(device)
    sync = load_sync_encoder(sync_ckpt).to(device)
    grid = GeneratorConfig(visual_fps=semantic.fps, sync_fps=sync.fps, duration_s=duration_s)
    grid.seq_lengths()  # a window too short for the generator fails here, before any clip is read
    text = text_encoder or load_text_encoder(text_cfg, device)
    captions = encode_texts(text, [e.caption for e in entries])
    cots = encode_texts(text, [e.cot for e in entries], cot=True)
    monos = encode_texts(text, paragraphs) if monolithic else None
    writer = CacheWriter(out_dir, "features", producers)
    windows, counts = {}, {"clips": 0, "windows": 0, "no_video": 0, "padded": 0, "no_caption": 0, "no_cot": 0}
    for i, e in enumerate(entries):
        info = probe(e.video).video if e.video else None
        has_video = info is not None
        if has_video:
            length = e.duration_s or info.duration_s
            plan = [Window(info.start_s + w.start_s, w.duration_s) for w in cache_windows(length, duration_s)]
            counts["padded"] += length < duration_s - 1e-6
        else:
            length = e.duration_s or probe(e.audio).duration_s
            plan = cache_windows(length, duration_s)
            counts["no_video"] += 1
        for k, w in enumerate(plan):
            wid = e.id if k == 0 else f"{e.id}@{k}"
            # the pipeline's path (no video: zeros; the generator swaps in its learned empty features by has_video)
            c = window_conditions(grid, semantic, sync, e.video if has_video else None, w, captions[i:i + 1])
            writer.add(wid, {"visual": c.visual[0], "sync": c.sync[0], "caption": captions[i], "cot": cots[i],
                             "has_video": torch.tensor([float(has_video)]),
                             **({"monolithic": monos[i]} if monolithic else {})})
            windows[wid] = [e.id, round(w.start_s, 6)]
        counts["clips"] += 1
        counts["windows"] += len(plan)
        counts["no_caption"] += not e.caption
        counts["no_cot"] += not e.cot
        if progress:
            progress(i + 1, len(entries))
    info = {"duration_s": duration_s, "visual_fps": semantic.fps, "sync_fps": sync.fps, "text_len": text.cfg.output_len,
            "manifest": str(Path(manifest).resolve()), "counts": counts, "windows": windows}
    return writer.close(info=info, extras={"empty_text": text.encode([""]).tokens[0]})


def monolithic_texts(entries) -> list[str]:
    """The monolithic paragraph of each manifest entry's ground truth; one-line error for an entry without one."""
    from foleyflow.cot import truth_monolithic
    from foleyflow.events import read_truth

    missing = [e.id for e in entries if not e.truth]
    if missing:
        raise FoleyError(f"the monolithic field needs each clip's ground truth; {len(missing)} manifest rows have no "
                         f"'truth' (e.g. {missing[0]})")
    return [truth_monolithic(read_truth(e.truth)) for e in entries]
