"""Trained audio-visual evaluation models behind DeSync and the IB-style score, wrapped to the interfaces of desync.py.

  - `load_offset_classifier(path)`: a sync_av checkpoint (foleyflow.models.av_ssl.SyncAVModel: the Synchformer-style
    offset classifier, 21 offsets from -2 to +2 s over 4.8 s windows) as a desync.OffsetClassifier. Trained by
    recipes/train_sync_encoder.py, whose class k means "the audio window starts offsets_s[k] s after the video
    window", i.e. the sound is heard offsets_s[k] s EARLY. desync.py's convention is the opposite (positive = the
    audio lags the video), so scores are re-indexed: desync class j takes the model's class for -OFFSETS_S[j].
  - `load_av_embedding(path, video_dir)`: a semantic_av checkpoint (SemanticAVModel, AudioCLIP-style contrastive
    training) as the IB-style pair video_embedding(name) / av_audio_embedder(audio, sr). ImageBind embeds a few
    frames and the whole audio; here the video embedding is the normalised mean of the per-frame embeddings of the
    whole clip at the encoder's 8 fps, and the audio embedding the normalised mean of the audio tokens of the clip.
  - `load_video_embedder(path)`: the PIPELINE's semantic encoder (a bundle folder or its semantic_av checkpoint)
    as video file -> clip embedding, for the retrieval baseline (baselines.retrieval_set); not an evaluation model.
  - `frame_reader(video_dir, fps, size)`: <video_dir>/<name>.mp4 decoded at `fps`, stretched to size x size (how
    the recipes decode), with a bounded in-memory cache since a report reads each video once per system.
Both models run in float32 on the CPU whatever the stored dtype (the bundled weights are fp16).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.desync import OFFSETS_S, WINDOW_S


def _offset_permutation(model_offsets) -> np.ndarray:
    """Index into the model's classes for each desync class: model offset == -OFFSETS_S[j]."""
    grid = np.round(np.asarray(model_offsets, np.float64), 3)
    idx = []
    for o in OFFSETS_S:
        hits = np.flatnonzero(np.abs(grid + o) < 1e-6)
        if len(hits) != 1:
            raise EvalError(f"the offset classifier's classes {list(grid)} do not cover the DeSync offsets "
                            f"{list(OFFSETS_S)}")
        idx.append(int(hits[0]))
    return np.array(idx)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or pad to n entries along axis 0: frames repeat the last one, audio pads with zeros."""
    if x.shape[0] >= n:
        return x[:n]
    if x.shape[0] == 0:
        raise EvalError("the offset classifier got an empty window")
    if x.ndim == 1:
        return np.concatenate([x, np.zeros(n - len(x), x.dtype)])
    return np.concatenate([x, np.repeat(x[-1:], n - x.shape[0], axis=0)])


MOTION_GAIN = 4.0


def motion_frames(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W, 3) uint8 "motion" input: channel 0 the grey level of frame t, channels 1 and 2
    MOTION_GAIN x |grey(t) - grey(t-1)| and |grey(t+1) - grey(t)| (0 at the window's ends), clipped to 255. Makes the
    small moving objects of FoleyWorld visible to the sync encoder's first layer; applied to each 4.8 s window alike in
    training (recipes/train_offset_classifier.py, frame_input: motion) and here."""
    g = np.asarray(frames, np.float32).mean(axis=-1)
    d = np.abs(np.diff(g, axis=0)) * MOTION_GAIN
    zero = np.zeros_like(g[:1])
    prev, nxt = np.concatenate([zero, d]), np.concatenate([d, zero])
    return np.clip(np.stack([g, prev, nxt], axis=-1), 0, 255).round().astype(np.uint8)


class SyncOffsetClassifier:
    """desync.OffsetClassifier around a SyncAVModel: __call__(frames (T, H, W, 3) uint8 at video_fps, audio (N,)
    float32 mono at sample_rate, both covering 4.8 s) -> (21,) logits over desync.OFFSETS_S (positive = audio
    lags). Windows a frame or a few samples short are padded (last frame repeated, audio zeros). `frame_size`: the
    model's input size; frames of any size are resized to it, but decoding at it (frame_reader) matches training."""

    def __init__(self, model, frame_input: str = "rgb"):
        if frame_input not in ("rgb", "motion"):
            raise EvalError(f"unknown frame input {frame_input!r} (rgb or motion)")
        self.model, self.frame_input = model.eval(), frame_input
        cfg = model.cfg
        if abs(cfg.window_s - WINDOW_S) > 1e-6:
            raise EvalError(f"the offset classifier uses {cfg.window_s} s windows; DeSync needs {WINDOW_S} s")
        self.sample_rate = int(cfg.audio.sample_rate)
        self.video_fps = float(cfg.visual.fps)
        self.frame_size = int(cfg.visual.image_size)  # frames are best decoded at this size (frame_reader)
        self.order = _offset_permutation(cfg.offsets_s)
        self.identity = getattr(model, "identity", {})

    def __call__(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        import torch

        frames, audio = np.asarray(frames), np.asarray(audio, np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3 or audio.ndim != 1:
            raise EvalError(f"the offset classifier takes frames (T, H, W, 3) and mono audio (N,), got "
                            f"{frames.shape} and {audio.shape}")
        frames = _fit(frames, int(round(WINDOW_S * self.video_fps)))
        if self.frame_input == "motion":
            frames = motion_frames(frames)
        audio = _fit(audio, int(round(WINDOW_S * self.sample_rate)))
        f = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None]
        with torch.no_grad():
            logits = self.model(f, torch.from_numpy(audio)[None])[0].float().numpy()
        return logits[self.order]


def load_offset_classifier(path: str | Path):
    """The DeSync offset classifier stored in a sync_av checkpoint (CheckpointError for other files). The frame input
    (rgb, or motion: see motion_frames) is read from the checkpoint's provenance ("frame_input"); a checkpoint
    trained on contacts alone (provenance offset_method: contacts) gives a ContactOffsetClassifier."""
    import json

    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.models.av_ssl import load_sync_model

    from foleyflow.eval.contact_offset import ContactOffsetClassifier, is_contact_model

    model = load_sync_model(path).float()
    meta = read_metadata(path)
    if is_contact_model(meta):
        return ContactOffsetClassifier(model)
    frame_input = json.loads(meta.get(PROVENANCE, "{}")).get("frame_input", "rgb")
    return SyncOffsetClassifier(model, frame_input)


def frame_reader(video_dir: str | Path, fps: float, size: int, *, cache_bytes: int = 1 << 30
                 ) -> Callable[[str], np.ndarray]:
    """read(name) -> (T, H, W, 3) uint8 frames of <video_dir>/<name>.mp4 at `fps`, stretched to size x size.
    Decoded clips are kept (least recently used dropped) up to `cache_bytes`. EvalError when the video is missing."""
    from foleyflow.media import decode_frames

    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise EvalError(f"video folder not found: {video_dir}")
    cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def read(name: str) -> np.ndarray:
        if name in cache:
            cache.move_to_end(name)
            return cache[name]
        path = video_dir / f"{name}.mp4"
        if not path.is_file():
            raise EvalError(f"no video for clip {name}: {path} not found")
        frames = decode_frames(path, fps, size=size, resize="stretch").frames
        cache[name] = frames
        while cache and sum(f.nbytes for f in cache.values()) > cache_bytes:
            cache.popitem(last=False)
        return frames

    return read


def load_av_embedding(path: str | Path, video_dir: str | Path
                      ) -> tuple[Callable[[str], np.ndarray], Callable[[np.ndarray, int], np.ndarray]]:
    """(video_embedding(name) -> (D,), av_audio_embedder(audio (C, N) or (N,), sample_rate) -> (D,)), both unit
    norm, from a semantic_av checkpoint; videos are <video_dir>/<name>.mp4. Video embeddings are cached by name."""
    import torch

    from foleyflow.audio import resample
    from foleyflow.models.av_ssl import load_semantic_model, pool_segments

    model = load_semantic_model(path).float().eval()
    vis = model.cfg.visual
    read = frame_reader(video_dir, vis.fps, vis.image_size, cache_bytes=0)
    embeddings: dict[str, np.ndarray] = {}

    def video_embedding(name: str) -> np.ndarray:
        if name not in embeddings:
            embeddings[name] = _clip_embedding(model.visual, read(name), f"the video of clip {name}")
        return embeddings[name]

    def av_audio_embedder(audio: np.ndarray, sr: int) -> np.ndarray:
        audio = np.asarray(audio, np.float64)
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        if audio.ndim != 1 or audio.size == 0:
            raise EvalError(f"the audio-visual embedder takes audio (C, N) or (N,), got {audio.shape}")
        x = torch.from_numpy(resample(audio, int(sr), model.cfg.audio.sample_rate))[None]
        with torch.no_grad():
            return pool_segments(model.audio_head(model.audio(x)), 1)[0, 0].numpy()

    video_embedding.identity = av_audio_embedder.identity = model.identity  # type: ignore[attr-defined]
    return video_embedding, av_audio_embedder


def _clip_embedding(visual, frames: np.ndarray, what: str) -> np.ndarray:
    """Normalised mean of a semantic encoder's per-frame embeddings of (T, H, W, 3) frames."""
    import torch

    from foleyflow.models.av_ssl import pool_segments

    if frames.shape[0] == 0:
        raise EvalError(f"{what} has no frames")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None]
    with torch.no_grad():
        return pool_segments(visual(x), 1)[0, 0].float().numpy()


def load_video_embedder(path: str | Path) -> Callable[[str | Path], np.ndarray]:
    """embed(video file) -> (D,) unit-norm clip embedding by the pipeline's semantic (8 fps) visual encoder: the mean
    of its frame embeddings over the whole clip. `path`: a bundle folder (its semantic_encoder) or a semantic_av
    checkpoint. The result has `identity` (kind, weights, sha256) for the report."""
    from foleyflow.media import decode_frames
    from foleyflow.models.av_ssl import load_semantic_encoder

    path = Path(path)
    if path.is_dir():
        from foleyflow.bundle import read_bundle

        path = read_bundle(path).files["semantic_encoder"]
    enc = load_semantic_encoder(path).float().eval()

    def embed(video: str | Path) -> np.ndarray:
        frames = decode_frames(video, enc.fps, size=enc.cfg.image_size, resize="stretch").frames
        return _clip_embedding(enc, frames, f"video {video}")

    embed.identity = enc.identity  # type: ignore[attr-defined]
    return embed
