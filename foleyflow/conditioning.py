"""Conditioning: windows, frame decoding at each encoder's rate, visual and text encoding, the text-encoder record.

The one path from a clip to the generator's condition features. `foleyflow extract-features` (the training caches,
foleyflow.data.features) and `FoleyPipeline.conditions` (generation) both call `window_conditions` /
`encode_video_window` and `text_features` here, so a generator sees at inference exactly the features it was trained
on (tests/test_conditioning.py compares the two).

Windows. The generator works on windows of a fixed duration W (its training clip length).
- `cache_windows` cuts a clip of D seconds for a cache: D <= W gives one window [0, W) (the clip is padded: the last
  video frame is repeated, the audio is padded with silence); D > W gives floor(D / W) back-to-back windows plus,
  when the rest is at least `min_tail_s`, one more window aligned to the end [D - W, D) (it overlaps its neighbour).
- `generation_windows` cuts a video for generation: D <= W gives one window of D seconds (at least 1 s); a longer
  video is cut into windows of W seconds that overlap by at least `overlap_s`: window k starts at k * (W - overlap_s),
  the last one ends exactly at D (foleyflow.pipeline joins them with crossfades).
Window starts are seconds from the first frame of the video stream; the stream's own start time (`probe`'s
`start_s`) is added when frames are decoded.

Frames. Each visual encoder states its rate (`fps`), input size (`cfg.image_size`) and how it resizes (semantic:
stretched to a square, as MMAudio's CLIP; sync: short side to the size and centre crop, as Synchformer), so frames are
decoded straight at that size by FFmpeg (`foleyflow.media.iter_frames`) and the encoder's own resize is a no-op.
The stages of a converted MMAudio release instead read frames as MMAudio's inference does (`frames_as_mmaudio`).
Frame counts follow the generator's token rules for the window (GeneratorConfig.seq_lengths): int(d * 8) semantic
frames; int(d * 25) sync frames, giving ((int(d * 25) - 16) // 8 + 1) * 8 sync tokens. Past the end of the video the
last frame is repeated. A window without video holds the generator's learned empty visual and sync features.

Text. Captions and prompts go through `TextEncoder.encode`, chains of thought (FoleyWorld's format, parsed by
`foleyflow.world.text.parse_cot`, or a mapping of its four parts) through `encode_cot`; both give `output_len`
tokens, so every text field of a cache and the empty text have the same token count (the generator's `text_len`).
A missing caption or CoT is encoded as the empty string (the generator's unconditional text).

Plan track. A plan (foleyflow.cot, schema "foleyflow-cot/1") reaches a generator with a plan pathway
(`GeneratorConfig.plan_dim > 0`) as `plan_window_track`: `foleyflow.cot.track.plan_track` of the plan seen from the
window's start (every time shifted by -start_s), on the generator's latent timeline (latent_fps = sample_rate /
samples_per_latent, T_latent frames of the window), with plan_dim - 8 per-source slots. Training
(recipes/train_flow.py, from FoleyWorld's ground truth) and generation (`FoleyPipeline.conditions(plan=...)`) both
call it, so an event at t seconds of the clip lands on latent frame round((t - start_s) * latent_fps) in both.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from foleyflow.errors import FoleyError
from foleyflow.models.text_encoder import TEXT_DIM, load_text_encoder  # noqa: F401  (re-exported)

MIN_TAIL_S = 1.0     # a rest shorter than this at the end of a long clip is not cached as its own window
MIN_WINDOW_S = 1.0   # generation windows are at least this long (the output is cut to the video afterwards)


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


def generation_windows(duration_s: float, window_s: float, overlap_s: float = 1.0) -> list[Window]:
    """Windows covering [0, duration_s] for generation (see the module docstring)."""
    if duration_s <= window_s + 1e-9:
        return [Window(0.0, max(duration_s, MIN_WINDOW_S))]
    if not 0 <= overlap_s <= window_s / 2:
        raise FoleyError(f"overlap {overlap_s} s must be between 0 and half the window ({window_s / 2} s)")
    hop = window_s - overlap_s
    n = math.ceil((duration_s - window_s) / hop - 1e-9) + 1
    starts = [k * hop for k in range(n - 1)] + [duration_s - window_s]
    return [Window(s, window_s) for s in starts]


# ---------------------------------------------------------------------------------------------------- video
def frame_size_mode(encoder) -> tuple[int | None, str]:
    """(decode size, resize mode) for a visual encoder: its input size and the resize it would apply itself; size
    None (frames at the video's own size, the encoder resizes them) when the encoder says `frames_as_mmaudio`."""
    size = getattr(getattr(encoder, "cfg", None), "image_size", None)
    sync_like = hasattr(getattr(encoder, "cfg", None), "segment_frames") or "sync" in type(encoder).__name__.lower()
    return (None if frames_as_mmaudio(encoder) else size), ("center_crop" if sync_like else "stretch")


def frames_as_mmaudio(encoder) -> bool:
    """Whether an encoder (the stages of a converted MMAudio release, foleyflow.models.mmaudio_bundle) wants its frames
    as MMAudio's inference reads them (hkchengrex/MMAudio `mmaudio/eval_utils.py` `load_video` ->
    `mmaudio/data/av_utils.py` `read_frames`): each output frame is the first decoded frame at or after its time
    (foleyflow.media `pick="next"`), at the video's own size, then resized by the encoder in torch (bicubic,
    antialiased: 384 x 384 stretched for CLIP, short side 224 and centre crop for Synchformer), as MMAudio's
    torchvision transforms do after decoding."""
    return bool(getattr(encoder, "frames_as_mmaudio", False))


def frame_spec(encoder, num_frames: int) -> tuple:
    """(fps, size, resize, pick, num_frames): how `decode_window` decodes a visual encoder's frames."""
    size, mode = frame_size_mode(encoder)
    return encoder.fps, size, mode, ("next" if frames_as_mmaudio(encoder) else "last"), int(num_frames)


def window_frames(path: str | Path, specs, start_s: float, duration_s: float) -> list[torch.Tensor]:
    """For each spec (fps, size, resize, pick, num_frames; see `frame_spec`), (1, num_frames, 3, H, W) uint8 frames
    of `path` from `start_s` (seconds of the stream's timeline), padded by repeating the last frame (or trimmed) to
    exactly num_frames; the video is decoded once for all of them (foleyflow.media.decode_frame_sets)."""
    from foleyflow.media import decode_frame_sets

    sets = decode_frame_sets(path, [spec[:4] for spec in specs], start_s=start_s, duration_s=duration_s)
    out = []
    for k, spec in enumerate(specs):
        n, frames = spec[4], sets[k][:spec[4]]
        sets[k] = None    # each set's frames are freed once stacked
        if not frames:
            raise FoleyError(f"{path}: no video frames between {start_s:.2f} s and {start_s + duration_s:.2f} s")
        frames += [frames[-1]] * (n - len(frames))
        out.append(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].contiguous())
    return out


def decode_window(path: str | Path, encoder, start_s: float, duration_s: float, num_frames: int) -> torch.Tensor:
    """(1, num_frames, 3, S, S) uint8 frames of `path` at `encoder.fps` from `start_s` (seconds of the stream's
    timeline), decoded at the encoder's input size; padded by repeating the last frame (or trimmed) to exactly
    `num_frames`."""
    return window_frames(path, [frame_spec(encoder, num_frames)], start_s, duration_s)[0]


def sync_frame_count(duration_s: float, sync_fps: float) -> int:
    """Frames the sync encoder reads for a window: int(duration_s * fps)."""
    return int(math.floor(duration_s * sync_fps + 1e-6))


class FeatureMemo:
    """The newest windows' features of one pair of encoders (semantic, sync), so that a video planned and then
    generated with the same encoders (`foleyflow generate` with a bundle that plans) is decoded and encoded once.
    An entry is keyed by the file (resolved path, size, modification time) and the window (start, duration, token
    counts); a memo answers only for the encoder objects it was made for. Thread-safe; holds at most `size` entries
    (CPU tensors of a few hundred kB)."""

    def __init__(self, semantic, sync, size: int = 4):
        self.semantic, self.sync, self.size = semantic, sync, int(size)
        self._entries: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def key(self, semantic, sync, path: str | Path, start_s: float, duration_s: float, visual_len: int,
            sync_len: int) -> tuple | None:
        """The entry key, or None when these are not the memo's encoders or the file cannot be read."""
        if semantic is not self.semantic or sync is not self.sync:
            return None
        try:
            p = Path(path).resolve()
            st = p.stat()
        except OSError:
            return None
        return (str(p), st.st_size, st.st_mtime_ns, round(float(start_s), 6), round(float(duration_s), 6),
                int(visual_len), int(sync_len))

    def get(self, key: tuple | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if key is None:
            return None
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return hit[0].clone(), hit[1].clone()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def put(self, key: tuple | None, visual: torch.Tensor, tokens: torch.Tensor) -> None:
        if key is None or self.size < 1:
            return
        with self._lock:
            self._entries[key] = (visual.clone(), tokens.clone())
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@torch.inference_mode()
def encode_window(path: str | Path, semantic, sync, start_s: float, duration_s: float, visual_len: int,
                  sync_len: int, timings: dict | None = None,
                  memo: FeatureMemo | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual (1, visual_len, Dv) and sync (1, sync_len, Ds) features (float32, CPU) of the window [start_s,
    start_s + duration_s) of a video (`start_s` on the stream's timeline). The encoders run on their own device.
    `timings`, if given, accumulates seconds under "decode" and "encoders". `memo`: a FeatureMemo of these encoders
    that answers a window it has already encoded (and keeps the new one)."""
    visual, tokens, _ = encode_window_and_frames(path, semantic, sync, start_s, duration_s, visual_len, sync_len,
                                                 timings, memo)
    return visual, tokens


@torch.inference_mode()
def encode_window_and_frames(path: str | Path, semantic, sync, start_s: float, duration_s: float, visual_len: int,
                             sync_len: int, timings: dict | None = None, memo: FeatureMemo | None = None,
                             extra=()) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """`encode_window`, plus the frames of each `extra` spec (fps, size, resize, pick, num_frames; the planner's
    position frames) of the same window, decoded in the same pass as the encoders' frames (one decode of the video
    for everything, or, when the memo answers, one for the extra frames alone)."""
    key = memo.key(semantic, sync, path, start_s, duration_s, visual_len, sync_len) if memo is not None else None
    hit = memo.get(key) if memo is not None else None
    extra = list(extra)
    t0 = time.perf_counter()
    if hit is not None:
        frames = window_frames(path, extra, start_s, duration_s) if extra else []
        if timings is not None and extra:
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t0
        return hit[0], hit[1], frames
    device = next(semantic.parameters()).device
    frames = window_frames(path, [frame_spec(semantic, visual_len),
                                  frame_spec(sync, sync_frame_count(duration_s, sync.fps)), *extra],
                           start_s, duration_s)
    sem_frames, syn_frames = frames[:2]
    t1 = time.perf_counter()
    visual = semantic(sem_frames.to(device)).float().cpu()
    tokens = sync(syn_frames.to(device)).float().cpu()
    if timings is not None:
        timings["decode"] = timings.get("decode", 0.0) + t1 - t0
        timings["encoders"] = timings.get("encoders", 0.0) + time.perf_counter() - t1
    if tokens.shape[1] != sync_len or visual.shape[1] != visual_len:
        raise FoleyError(f"encoders gave {visual.shape[1]} visual and {tokens.shape[1]} sync tokens for "
                         f"{duration_s} s; the generator expects {visual_len} and {sync_len}")
    if memo is not None:
        memo.put(key, visual, tokens)
    return visual, tokens, frames[2:]


def window_conditions(generator_cfg, semantic, sync, video: str | Path | None, window: Window, text: torch.Tensor,
                      *, video_start_s: float = 0.0, empty_visual: torch.Tensor | None = None,
                      empty_sync: torch.Tensor | None = None, timings: dict | None = None,
                      memo: FeatureMemo | None = None):
    """The generator's Conditions (foleyflow.models.generator) of one window: the video's features over `window`
    (its start relative to the first frame; `video_start_s` is the stream's start time), or without a video the
    learned empty features `empty_visual` (1, Dv) / `empty_sync` (1, Ds) (zeros if not given, as the caches store
    them); `text` (1, Nt, Dt) as is; `memo`: see encode_window. Lengths follow `generator_cfg.seq_lengths(window.duration_s)`."""
    from foleyflow.models.generator import Conditions

    _, visual_len, sync_len = generator_cfg.seq_lengths(window.duration_s)
    if video is not None:
        visual, tokens = encode_window(video, semantic, sync, video_start_s + window.start_s, window.duration_s,
                                       visual_len, sync_len, timings, memo)
    else:
        ev = torch.zeros(1, semantic.out_dim) if empty_visual is None else empty_visual.detach().float().cpu()
        es = torch.zeros(1, sync.out_dim) if empty_sync is None else empty_sync.detach().float().cpu()
        visual, tokens = ev[None].expand(1, visual_len, -1), es[None].expand(1, sync_len, -1)
    return Conditions(visual=visual, sync=tokens, text=text.float(), duration_s=float(window.duration_s))


# ---------------------------------------------------------------------------------------------------- plan
def shift_plan(plan, start_s: float):
    """The plan seen from `start_s` seconds into the clip: every onset, interval and trajectory time minus start_s
    (times before the window become negative; nothing is validated or dropped: the track is pure arithmetic)."""
    import dataclasses

    if start_s == 0:
        return plan
    def at(e):
        return (e[0] - start_s, e[1] - start_s) if isinstance(e, tuple) else e - start_s
    sources = tuple(dataclasses.replace(
        src, events=None if src.events is None else tuple(at(e) for e in src.events),
        trajectory=None if src.trajectory is None else tuple((t - start_s, p) for t, p in src.trajectory))
        for src in plan.sources)
    return dataclasses.replace(plan, sources=sources, duration_s=plan.duration_s - start_s)


def plan_window_track(generator_cfg, plan, duration_s: float, start_s: float = 0.0) -> torch.Tensor:
    """(T_latent, plan_dim) float32 plan track of the window [start_s, start_s + duration_s) of the plan's clip, on
    the generator's latent timeline (T_latent = generator_cfg.seq_lengths(duration_s)[0], frame f at start_s +
    f / latent_fps seconds of the clip). Needs a generator with a plan pathway (plan_dim >= 8: the track's 8 fixed
    channels, then plan_dim - 8 source slots)."""
    from foleyflow.cot.track import TRACK_CHANNELS, plan_track

    slots = generator_cfg.plan_dim - len(TRACK_CHANNELS)
    if slots < 0:
        raise FoleyError(f"generator plan_dim {generator_cfg.plan_dim} cannot hold a plan track (it needs at least "
                         f"{len(TRACK_CHANNELS)} channels)")
    num_frames = generator_cfg.seq_lengths(duration_s)[0]
    return plan_track(shift_plan(plan, start_s), generator_cfg.latent_fps, num_frames, num_source_slots=slots)


# ---------------------------------------------------------------------------------------------------- text
def cot_parts(text: str) -> dict[str, str]:
    """A chain of thought in FoleyWorld's format (foleyflow.world.text) -> {semantic, temporal, aesthetic, spatial}."""
    from foleyflow.world.text import PARTS, parse_cot

    cot = parse_cot(text)
    return {p: getattr(cot, p) for p in PARTS}


def encode_texts(encoder, texts: Sequence[str | None], *, cot: bool = False) -> torch.Tensor:
    """(N, output_len, 384) token features; None or "" -> the empty string's features."""
    if not texts:
        return torch.zeros(0, encoder.cfg.output_len, TEXT_DIM)
    out = torch.zeros(len(texts), encoder.cfg.output_len, TEXT_DIM)
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


def text_features(encoder, prompt: str | None = None, cot: str | Mapping[str, str] | None = None, *,
                  empty: torch.Tensor | None = None) -> torch.Tensor:
    """(1, output_len, 384) float32: a prompt, a chain of thought (FoleyWorld's text format or a mapping of its four
    parts), or neither: `empty` (1 or no batch dim; the generator's stored empty-text features) if given, else the
    encoder's encoding of "". `encoder` is only used when there is a text (it may be a callable returning it)."""
    if prompt and cot:
        raise FoleyError("give a prompt or a chain of thought, not both")
    if not prompt and not cot and empty is not None:
        return (empty if empty.dim() == 3 else empty[None]).detach().float().cpu()
    enc = encoder() if callable(encoder) and not hasattr(encoder, "encode") else encoder
    if cot:
        parts = cot_parts(cot) if isinstance(cot, str) else dict(cot)
        return enc.encode_cot([parts]).tokens.float()
    return enc.encode([prompt or ""]).tokens.float()


def text_encoder_record(cfg) -> dict:
    """Producer record of the text encoder for caches and bundles: its identity hashed like a checkpoint."""
    from foleyflow.models.text_encoder import text_encoder_id

    ident = text_encoder_id(cfg)
    # what a text that fits its budget encodes to depends on neither what happens to texts that do not (overflow
    # error or truncate) nor on how many texts run at once (batch_size): those do not change the identity; "split"
    # encodes the long texts a generator trained with it has seen (the ablation's paragraph), so it is part of it
    drop = ("batch_size",) if ident["config"].get("overflow") == "split" else ("overflow", "batch_size")
    same = {**ident, "config": {k: v for k, v in ident["config"].items() if k not in drop}}
    digest = hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()
    return {"kind": "text_encoder", "sha256": digest, "path": ident["model"], "config": ident["config"]}
