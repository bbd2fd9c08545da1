"""Adapters that let real CLIP or Synchformer features take the place of foleyflow's own visual encoders.

MMAudio (hkchengrex/MMAudio) conditions on
  - CLIP (DFN5B ViT-H/14-384) image embeddings: frames at 8 fps stretched to 384 x 384 without cropping, scaled to
    [0, 1], normalised with OpenAI CLIP's mean/std, `encode_image(x, normalize=True)` -> (B, T8, 1024);
  - Synchformer's visual branch: frames at 25 fps, short side resized to 224 (bicubic) and centre-cropped, mean 0.5
    std 0.5; cut into segments of 16 frames with stride 8, called as (B*S, 1, 16, 3, 224, 224) -> (B*S, 1, 8, 768)
    and flattened to (B, S*8, 768): 24 tokens per second.
The adapters implement that preprocessing and segmenting here; the networks themselves are passed in (any module or
callable with the call convention above), optionally with weights read from a safetensors file by `from_weights`.
Foleyflow ships no such weights and never downloads them. Departure: we resize float frames (antialiased bicubic,
clamped to [0, 1]) where the reference resizes uint8 tensors, a difference below one grey level.

Every visual encoder, ours or adapted, has the same interface, which the pipeline and the feature cache rely on:
    encoder.fps                       the frame rate it expects (8 or 25)
    encoder.out_dim                   feature size D
    encoder.num_tokens(num_frames)    tokens it returns for that many frames
    encoder(frames)                   frames (B, T, 3, H, W) uint8 [0, 255] or float [0, 1], any H, W -> (B, N, D)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.errors import CheckpointError, FoleyError
from foleyflow.hashing import file_sha256
from foleyflow.models.visual import (SEGMENT_FRAMES, SEGMENT_STRIDE, SEMANTIC_FPS, SYNC_FPS, num_sync_segments,
                                     prepare_frames, segment_frames)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class AdapterError(FoleyError):
    """An external model gave features of the wrong shape for its adapter."""


@dataclass
class ClipAdapterConfig:
    image_size: int = 384
    dim: int = 1024
    fps: float = SEMANTIC_FPS
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    frames_per_batch: int = 32


@dataclass
class SynchformerAdapterConfig:
    image_size: int = 224
    dim: int = 768
    fps: float = SYNC_FPS
    segment_frames: int = SEGMENT_FRAMES
    segment_stride: int = SEGMENT_STRIDE
    tokens_per_segment: int = 8
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    segments_per_batch: int = 40


def _as_module(model: nn.Module | Callable) -> nn.Module | Callable:
    if not callable(model):
        raise TypeError(f"the adapted model must be a module or a callable, got {type(model).__name__}")
    return model


class ClipFrameAdapter(nn.Module):
    """A CLIP-style image model in place of SemanticEncoder.

    `image_model(x)`: x (N, 3, image_size, image_size) normalised -> (N, dim) (e.g. open_clip's
    `lambda x: model.encode_image(x, normalize=True)`). Output (B, T, dim), L2-normalised per frame."""

    def __init__(self, image_model: nn.Module | Callable, cfg: ClipAdapterConfig | None = None,
                 identity: dict | None = None):
        super().__init__()
        self.cfg = cfg or ClipAdapterConfig()
        self.image_model = _as_module(image_model)
        self.identity = {"kind": "semantic", "impl": "clip_adapter", "dim": self.cfg.dim, "fps": self.cfg.fps,
                         **(identity or {})}

    fps = property(lambda self: self.cfg.fps)
    out_dim = property(lambda self: self.cfg.dim)

    def num_tokens(self, num_frames: int) -> int:
        return num_frames

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 3, S, S): stretched to S x S (no crop), CLIP mean/std."""
        return prepare_frames(frames, self.cfg.image_size, "stretch", self.cfg.mean, self.cfg.std)

    def forward(self, frames: torch.Tensor, *, preprocessed: bool = False) -> torch.Tensor:
        x = frames if preprocessed else self.preprocess(frames)
        b, t = x.shape[:2]
        flat = x.reshape(b * t, *x.shape[2:])
        outs = [self.image_model(chunk) for chunk in flat.split(self.cfg.frames_per_batch)]
        out = torch.cat(outs)
        if out.shape != (b * t, self.cfg.dim):
            raise AdapterError(f"the CLIP model returned {tuple(out.shape)} for {b * t} frames, "
                               f"expected ({b * t}, {self.cfg.dim})")
        return F.normalize(out.float(), dim=-1).reshape(b, t, self.cfg.dim)


class SynchformerAdapter(nn.Module):
    """Synchformer's visual branch in place of SyncEncoder.

    `segment_model(x)`: x (N, 1, segment_frames, 3, S, S) normalised -> (N, 1, tokens_per_segment, dim), the call
    convention of MMAudio's Synchformer. Output (B, num_segments * tokens_per_segment, dim), not normalised."""

    def __init__(self, segment_model: nn.Module | Callable, cfg: SynchformerAdapterConfig | None = None,
                 identity: dict | None = None):
        super().__init__()
        self.cfg = cfg or SynchformerAdapterConfig()
        self.segment_model = _as_module(segment_model)
        self.identity = {"kind": "sync", "impl": "synchformer_adapter", "dim": self.cfg.dim, "fps": self.cfg.fps,
                         **(identity or {})}

    fps = property(lambda self: self.cfg.fps)
    out_dim = property(lambda self: self.cfg.dim)

    def num_tokens(self, num_frames: int) -> int:
        c = self.cfg
        return num_sync_segments(num_frames, c.segment_frames, c.segment_stride) * c.tokens_per_segment

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 3, S, S): short side to S, centre crop, mean 0.5 std 0.5."""
        return prepare_frames(frames, self.cfg.image_size, "center_crop", self.cfg.mean, self.cfg.std)

    def forward(self, frames: torch.Tensor, *, preprocessed: bool = False) -> torch.Tensor:
        c = self.cfg
        x = frames if preprocessed else self.preprocess(frames)
        seg = segment_frames(x, c.segment_frames, c.segment_stride)  # (B, S, F, 3, H, W)
        b, s = seg.shape[:2]
        flat = seg.reshape(b * s, 1, *seg.shape[2:])
        out = torch.cat([self.segment_model(chunk) for chunk in flat.split(c.segments_per_batch)])
        if out.shape != (b * s, 1, c.tokens_per_segment, c.dim):
            raise AdapterError(f"the Synchformer model returned {tuple(out.shape)} for {b * s} segments, "
                               f"expected ({b * s}, 1, {c.tokens_per_segment}, {c.dim})")
        return out.float().reshape(b, s * c.tokens_per_segment, c.dim)


def load_external_weights(module: nn.Module, path: str | Path,
                          convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> dict:
    """Loads a safetensors state dict (optionally renamed by `convert`) strictly into `module`, in eval mode.

    Only safetensors is read (nothing is unpickled); convert a released .pth once, offline, with a converter.
    Returns an identity dict (weights path and sha256) for feature caches."""
    from safetensors.torch import load_file

    from foleyflow.checkpoint import load_into

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: adapters read .safetensors weights only (convert other formats first)")
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__})") from None
    load_into(module, convert(tensors) if convert else tensors, what=path.name)
    module.eval().requires_grad_(False)
    return {"weights": str(path.resolve()), "sha256": file_sha256(path)}


def clip_adapter_from_weights(path: str | Path, image_model: nn.Module, *, encode: Callable | None = None,
                              convert: Callable | None = None, cfg: ClipAdapterConfig | None = None) -> ClipFrameAdapter:
    """Builds a ClipFrameAdapter around `image_model` after loading its weights from `path` (safetensors).
    `encode(model, x)` calls the model (default: `model(x)`), e.g. `lambda m, x: m.encode_image(x, normalize=True)`."""
    identity = load_external_weights(image_model, path, convert)
    fn = image_model if encode is None else _Bound(image_model, encode)
    return ClipFrameAdapter(fn, cfg, identity)


def synchformer_adapter_from_weights(path: str | Path, segment_model: nn.Module, *, convert: Callable | None = None,
                                     cfg: SynchformerAdapterConfig | None = None) -> SynchformerAdapter:
    """Builds a SynchformerAdapter around `segment_model` after loading its weights from `path` (safetensors)."""
    identity = load_external_weights(segment_model, path, convert)
    return SynchformerAdapter(segment_model, cfg, identity)


class _Bound(nn.Module):
    def __init__(self, model: nn.Module, encode: Callable):
        super().__init__()
        self.model, self.encode = model, encode

    def forward(self, x):
        return self.encode(self.model, x)
