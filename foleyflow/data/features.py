"""Condition features of videos and texts, computed once: the code shared by `foleyflow extract-features` (training
caches) and `FoleyPipeline` (generation), so a generator sees at inference exactly the features it was trained on.

Windows. The generator works on windows of a fixed duration W (its training clip length). `cache_windows` cuts a clip
of D seconds for a cache: D <= W gives one window [0, W) (the clip is padded: the last video frame is repeated, the
audio is padded with silence); D > W gives floor(D / W) back-to-back windows plus, when the rest is at least
`min_tail_s`, one more window aligned to the end [D - W, D) (it overlaps its neighbour). The first window of clip `id`
is cached as `id`, window k >= 1 as `id@k` (so a latents cache of the first W seconds of each clip pairs with it);
every window's start is recorded in the cache's info.

Frames. Each visual encoder states its rate (`fps`), input size (`cfg.image_size`) and how it resizes (semantic:
stretched to a square, as MMAudio's CLIP; sync: short side to the size and centre crop, as Synchformer), so frames are
decoded straight at that size by FFmpeg (`foleyflow.media.iter_frames`) and the encoder's own resize is a no-op.
Frame counts follow the generator's token rules for the window: int(d * 8) semantic frames; int(d * 25) sync frames,
giving ((int(d * 25) - 16) // 8 + 1) * 8 sync tokens. Past the end of the video the last frame is repeated.

Text. Captions and prompts go through `TextEncoder.encode`, chains of thought (FoleyWorld's format, parsed by
`foleyflow.world.text.parse_cot`) through `encode_cot`; both give `output_len` tokens, so every text field of a cache
and the empty text have the same token count (the generator's `text_len`). A missing caption or CoT is encoded as the
empty string (the generator's unconditional text).
"""
from __future__ import annotations

from foleyflow.models.text_encoder import load_text_encoder_quietly  # noqa: F401  (its home moved down)

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from foleyflow.errors import FoleyError

MIN_TAIL_S = 1.0  # a rest shorter than this at the end of a long clip is not cached as its own window


@dataclass(frozen=True)
class Window:
    start_s: float  # seconds from the start of the video stream
    duration_s: float


def cache_windows(duration_s: float, window_s: float, min_tail_s: float = MIN_TAIL_S) -> list[Window]:
    """Windows of `window_s` covering a clip of `duration_s` for a cache (see the module docstring)."""
    if window_s <= 0:
        raise FoleyError(f"window duration must be positive, got {window_s}")
    if duration_s <= window_s + 1e-6:
        return [Window(0.0, window_s)]
    n = int(math.floor(duration_s / window_s + 1e-9))
    out = [Window(k * window_s, window_s) for k in range(n)]
    if duration_s - n * window_s >= min_tail_s:
        out.append(Window(duration_s - window_s, window_s))
    return out


def frame_size_mode(encoder) -> tuple[int | None, str]:
    """(decode size, resize mode) for a visual encoder: its input size and the resize it would apply itself."""
    size = getattr(getattr(encoder, "cfg", None), "image_size", None)
    sync_like = hasattr(getattr(encoder, "cfg", None), "segment_frames") or "sync" in type(encoder).__name__.lower()
    return size, ("center_crop" if sync_like else "stretch")


def decode_window(path: str | Path, encoder, start_s: float, duration_s: float, num_frames: int) -> torch.Tensor:
    """(1, num_frames, 3, S, S) uint8 frames of `path` at `encoder.fps` from `start_s`, decoded at the encoder's
    input size; padded by repeating the last frame (or trimmed) to exactly `num_frames`."""
    from foleyflow.media import iter_frames

    size, mode = frame_size_mode(encoder)
    frames = [f for _, _, f in iter_frames(path, encoder.fps, size=size, resize=mode, start_s=start_s,
                                           duration_s=duration_s)][:num_frames]
    if not frames:
        raise FoleyError(f"{path}: no video frames between {start_s:.2f} s and {start_s + duration_s:.2f} s")
    frames += [frames[-1]] * (num_frames - len(frames))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].contiguous()


@torch.inference_mode()
def encode_window(path: str | Path, semantic, sync, start_s: float, duration_s: float, visual_len: int,
                  sync_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual (1, visual_len, Dv) and sync (1, sync_len, Ds) features of one window of a video (float32, CPU)."""
    device = next(semantic.parameters()).device
    sem_frames = decode_window(path, semantic, start_s, duration_s, visual_len)
    visual = semantic(sem_frames.to(device)).float().cpu()
    n25 = int(math.floor(duration_s * sync.fps + 1e-6))
    syn_frames = decode_window(path, sync, start_s, duration_s, n25)
    tokens = sync(syn_frames.to(device)).float().cpu()
    if tokens.shape[1] != sync_len or visual.shape[1] != visual_len:
        raise FoleyError(f"encoders gave {visual.shape[1]} visual and {tokens.shape[1]} sync tokens for "
                         f"{duration_s} s; the generator expects {visual_len} and {sync_len}")
    return visual, tokens


# ---------------------------------------------------------------------------------------------------- text
def cot_parts(text: str) -> dict[str, str]:
    """A chain of thought in FoleyWorld's format (foleyflow.world.text) -> {semantic, temporal, aesthetic, spatial}."""
    from foleyflow.world.text import PARTS, parse_cot

    cot = parse_cot(text)
    return {p: getattr(cot, p) for p in PARTS}


def encode_texts(encoder, texts: Sequence[str | None], *, cot: bool = False) -> torch.Tensor:
    """(N, output_len, 384) token features; None or "" -> the empty string's features."""
    if not texts:
        return torch.zeros(0, encoder.cfg.output_len, 384)
    out = torch.zeros(len(texts), encoder.cfg.output_len, 384)
    todo = [(i, t) for i, t in enumerate(texts) if t]
    if todo:
        idx = [i for i, _ in todo]
        if cot:
            feats = encoder.encode_cot([cot_parts(t) for _, t in todo]).tokens
        else:
            feats = encoder.encode([t for _, t in todo]).tokens
        out[idx] = feats
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        out[empty] = encoder.encode([""]).tokens
    return out


def text_encoder_record(cfg) -> dict:
    """Producer record of the text encoder for caches and bundles: its identity hashed like a checkpoint."""
    from foleyflow.models.text_encoder import text_encoder_id

    ident = text_encoder_id(cfg)
    # what a text that fits its budget encodes to depends on neither what happens to texts that do not (overflow)
    # nor on how many texts run at once (batch_size): those do not change the identity
    same = {**ident, "config": {k: v for k, v in ident["config"].items() if k not in ("overflow", "batch_size")}}
    digest = hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()
    return {"kind": "text_encoder", "sha256": digest, "path": ident["model"], "config": ident["config"]}


# ---------------------------------------------------------------------------------------------------- extraction
def extract_features(manifest: str | Path, out_dir: str | Path, semantic_ckpt: str | Path, sync_ckpt: str | Path, *,
                     duration_s: float = 8.0, text_cfg=None, device: str = "cpu", text_encoder=None,
                     progress: Callable | None = None) -> Path:
    """Builds a features cache (format in docs/caches.md) for every clip of a JSONL manifest.

    Fields per window: visual (int(d * 8), Dv), sync (sync tokens, Ds), caption and cot (output_len, 384), has_video
    (1,). Extras: empty_text (output_len, 384). Info: duration_s, rates, text_len, windows {id: [clip id, start_s]}.
    Producers: semantic_encoder and sync_encoder (checkpoint sha256), text_encoder (config hash).
    `progress(n_done, n_total)` is called after each clip."""
    from foleyflow.data.cache import CacheWriter, producer_record
    from foleyflow.data.manifest import read_manifest
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
    _, visual_len, sync_len = grid.seq_lengths()
    text = text_encoder or load_text_encoder_quietly(text_cfg, device)
    captions = encode_texts(text, [e.caption for e in entries])
    cots = encode_texts(text, [e.cot for e in entries], cot=True)
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
            if has_video:
                visual, tokens = encode_window(e.video, semantic, sync, w.start_s, w.duration_s, visual_len, sync_len)
            else:
                visual, tokens = torch.zeros(1, visual_len, semantic.out_dim), torch.zeros(1, sync_len, sync.out_dim)
            writer.add(wid, {"visual": visual[0], "sync": tokens[0], "caption": captions[i], "cot": cots[i],
                             "has_video": torch.tensor([float(has_video)])})
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
