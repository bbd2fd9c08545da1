"""Visual condition encoders trained here (no pretrained CLIP or Synchformer exists offline).

Two encoders take the places MMAudio gives to CLIP and Synchformer (see docs/encoders.md):
  - SemanticEncoder: one L2-normalised embedding per frame at 8 fps, like MMAudio's CLIP image features
    (frames resized to a square without cropping, as MMAudio does for CLIP at 384 px). Ours is a small CNN.
  - SyncEncoder: Synchformer's visual layout (Iashin et al., "Synchformer", ICASSP 2024): 25 fps frames cut into
    segments of 16 frames with stride 8; tubelets of 2 frames x 16x16 pixels; divided space-time attention
    (MotionFormer-style: attention over time per patch, then over space per time step); mean pooling over space,
    so each segment gives 16 / 2 = 8 tokens. Departures: far smaller (width 192, depth 4 vs 768 / 12), 112 px instead
    of 224, spatial mean pooling instead of a transformer aggregator, no class token, trained from scratch on our
    data by audio-visual offset classification (recipes/train_sync_encoder.py).
Token-count rules (MMAudio, reference.md 1.2): clip_seq_len = int(duration_s * 8);
sync_seq_len = ((num_frames_25fps - 16) // 8 + 1) * 8, i.e. 192 tokens for 8 s (24 tokens/s).

Frames are (B, T, 3, H, W), uint8 in [0, 255] or float in [0, 1], any H and W; each encoder resizes and normalises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.errors import FoleyError

SEMANTIC_FPS = 8
SYNC_FPS = 25
SEGMENT_FRAMES = 16
SEGMENT_STRIDE = 8


class FrameError(FoleyError):
    """Frames of the wrong shape, type or count for an encoder."""


# ---------------------------------------------------------------- token-count rules
def clip_seq_len(duration_s: float, fps: float = SEMANTIC_FPS) -> int:
    """Semantic tokens (frames at 8 fps) for a clip of `duration_s` seconds: int(duration_s * 8)."""
    return int(duration_s * fps)


def num_sync_segments(num_frames: int, segment_frames: int = SEGMENT_FRAMES, stride: int = SEGMENT_STRIDE) -> int:
    """Segments of `segment_frames` with `stride` that fit in `num_frames` (0 if fewer frames than one segment)."""
    return 0 if num_frames < segment_frames else (num_frames - segment_frames) // stride + 1


def sync_seq_len(duration_s: float, fps: float = SYNC_FPS, segment_frames: int = SEGMENT_FRAMES,
                 stride: int = SEGMENT_STRIDE, tokens_per_segment: int = 8) -> int:
    """Sync tokens for `duration_s` seconds: ((int(duration_s * 25) - 16) // 8 + 1) * 8 (192 for 8 s)."""
    return num_sync_segments(int(round(duration_s * fps, 6)), segment_frames, stride) * tokens_per_segment


def sync_token_times(num_segments: int, fps: float = SYNC_FPS, segment_frames: int = SEGMENT_FRAMES,
                     stride: int = SEGMENT_STRIDE, tubelet: int = 2) -> torch.Tensor:
    """Centre time in seconds of every sync token, (num_segments * segment_frames // tubelet,), segment-major."""
    seg = torch.arange(num_segments)[:, None] * stride
    sub = torch.arange(segment_frames // tubelet)[None, :] * tubelet + (tubelet - 1) / 2
    return ((seg + sub + 0.5) / fps).reshape(-1)


# ---------------------------------------------------------------- frame preprocessing (pure functions)
def check_frames(frames: torch.Tensor) -> None:
    """Raises FrameError unless frames is a (B, T, 3, H, W) uint8 or floating-point tensor."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise FrameError(f"frames must be a (B, T, 3, H, W) tensor, got {shape}")
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise FrameError(f"frames must be uint8 or float, got {frames.dtype}")


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) uint8 [0, 255] or float [0, 1] -> float32 [0, 1]; checks the layout."""
    check_frames(frames)
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def resize_frames(frames: torch.Tensor, size: int, mode: Literal["stretch", "center_crop"]) -> torch.Tensor:
    """(B, T, C, H, W) float -> (B, T, C, size, size).

    stretch: resize to size x size without cropping (MMAudio's CLIP input). center_crop: resize the short side to
    `size` (aspect kept), then crop the centre (Synchformer's input). Bicubic with antialiasing, clamped to [0, 1]."""
    b, t, c, h, w = frames.shape
    x = frames.reshape(b * t, c, h, w)
    if mode == "stretch":
        out_hw = (size, size)
    elif mode == "center_crop":
        scale = size / min(h, w)
        out_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    if out_hw != (h, w):
        x = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    if mode == "center_crop":
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size]
    return x.reshape(b, t, c, size, size)


def normalize_frames(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> (x - mean) / std per channel."""
    m = torch.tensor(mean, dtype=frames.dtype, device=frames.device)[:, None, None]
    s = torch.tensor(std, dtype=frames.dtype, device=frames.device)[:, None, None]
    return (frames - m) / s


def prepare_frames(frames: torch.Tensor, size: int, mode: Literal["stretch", "center_crop"],
                   mean: tuple[float, ...], std: tuple[float, ...], chunk_frames: int = 64) -> torch.Tensor:
    """frames_to_float -> resize_frames -> normalize_frames, `chunk_frames` at a time, so a long or large video is
    never held in float at its full size: (B, T, 3, H, W) uint8/float -> (B, T, 3, size, size) float32."""
    check_frames(frames)
    outs = [normalize_frames(resize_frames(frames_to_float(frames[:, i:i + chunk_frames]), size, mode), mean, std)
            for i in range(0, frames.shape[1], chunk_frames)]
    return torch.cat(outs, dim=1) if outs else torch.zeros(frames.shape[0], 0, 3, size, size)


def motion_input(x: torch.Tensor, gain: float) -> torch.Tensor:
    """(B, T, 3, H, W) normalised frames -> (B, T, 3, H, W): [grey, gain * (g_t - g_t-1), gain * (g_t+1 - g_t)]."""
    g = x.mean(dim=2)
    d = torch.diff(g, dim=1) * gain
    zero = torch.zeros_like(g[:, :1])
    return torch.stack([g, torch.cat([zero, d], 1), torch.cat([d, zero], 1)], dim=2)


def segment_frames(frames: torch.Tensor, segment_frames: int = SEGMENT_FRAMES,
                   stride: int = SEGMENT_STRIDE) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, S, segment_frames, C, H, W), S = (T - segment_frames) // stride + 1 (a view)."""
    t = frames.shape[1]
    if t < segment_frames:
        raise FrameError(f"the sync encoder needs at least {segment_frames} frames "
                         f"({segment_frames / SYNC_FPS:.2f} s at {SYNC_FPS} fps), got {t}")
    x = frames.unfold(1, segment_frames, stride)  # (B, S, C, H, W, segment)
    return x.permute(0, 1, 5, 2, 3, 4)


# ---------------------------------------------------------------- semantic encoder
@dataclass
class SemanticEncoderConfig:
    image_size: int = 128  # frames are stretched to image_size x image_size (no crop), like MMAudio's CLIP input
    channels: tuple[int, ...] = (32, 64, 128, 256)  # one stride-2 stage per entry after a stride-2 stem
    blocks_per_stage: int = 1
    embed_dim: int = 256
    fps: float = SEMANTIC_FPS  # documentation of the rate the encoder expects; it works per frame
    frames_per_batch: int = 256  # frames per forward chunk (memory bound for long videos)


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, dim), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1),
                                  nn.GroupNorm(8, dim), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class SemanticEncoder(nn.Module):
    """Per-frame CNN: (B, T, 3, H, W) frames at 8 fps -> (B, T, embed_dim) L2-normalised embeddings.

    Input normalisation is mean 0.5 / std 0.5 per channel. GroupNorm only, so results do not depend on the batch."""

    def __init__(self, cfg: SemanticEncoderConfig):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        layers: list[nn.Module] = [nn.Conv2d(3, c0, 3, stride=2, padding=1)]
        prev = c0
        for c in cfg.channels:
            layers.append(nn.Conv2d(prev, c, 3, stride=2, padding=1))
            layers += [ResBlock(c) for _ in range(cfg.blocks_per_stage)]
            prev = c
        self.trunk = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(8, prev)
        self.proj = nn.Linear(prev, cfg.embed_dim)

    @property
    def out_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def fps(self) -> float:
        return self.cfg.fps

    def num_tokens(self, num_frames: int) -> int:
        return num_frames

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8/float -> (B, T, 3, S, S) normalised float, S = image_size."""
        return prepare_frames(frames, self.cfg.image_size, "stretch", (0.5,) * 3, (0.5,) * 3)

    def forward(self, frames: torch.Tensor, *, preprocessed: bool = False) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> (B, T, embed_dim), unit L2 norm per frame."""
        x = frames if preprocessed else self.preprocess(frames)
        b, t = x.shape[:2]
        x = x.reshape(b * t, *x.shape[2:]).to(self.proj.weight.dtype)
        outs = []
        for chunk in x.split(self.cfg.frames_per_batch):
            h = F.gelu(self.norm(self.trunk(chunk))).mean(dim=(2, 3))
            outs.append(self.proj(h))
        return F.normalize(torch.cat(outs).reshape(b, t, -1), dim=-1)


# ---------------------------------------------------------------- sync encoder
@dataclass
class SyncEncoderConfig:
    image_size: int = 112  # short side resized, centre crop (Synchformer: 224)
    patch_size: int = 16
    tubelet: int = 2  # frames per temporal patch: 16 / 2 = 8 tokens per segment
    segment_frames: int = SEGMENT_FRAMES
    segment_stride: int = SEGMENT_STRIDE
    width: int = 192
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    out_dim: int = 192  # token feature size given to the generator
    fps: float = SYNC_FPS
    segments_per_batch: int = 32  # segments per forward chunk (memory bound for long videos)
    frame_input: str = "rgb"  # "rgb", or "motion": grey level + signed differences to the previous and next frame
    motion_gain: float = 4.0  # scale of the frame differences in the motion input

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        if self.segment_frames % self.tubelet or self.image_size % self.patch_size or self.width % self.num_heads:
            raise ConfigError("sync encoder: segment_frames must divide by tubelet, image_size by patch_size, "
                              "width by num_heads")
        if self.frame_input not in ("rgb", "motion"):
            raise ConfigError(f"sync encoder: frame_input must be rgb or motion, got {self.frame_input!r}")

    @property
    def tokens_per_segment(self) -> int:
        return self.segment_frames // self.tubelet


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (N, L, D)
        n, length, d = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, length, d))


class _DividedBlock(nn.Module):
    """Pre-norm block: temporal attention (per patch), spatial attention (per time step), MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_t, self.attn_t = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm_s, self.attn_s = nn.LayerNorm(dim), _Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):  # (N, T, P, D)
        n, t, p, d = x.shape
        xt = x.permute(0, 2, 1, 3).reshape(n * p, t, d)
        xt = xt + self.attn_t(self.norm_t(xt))
        x = xt.reshape(n, p, t, d).permute(0, 2, 1, 3).reshape(n * t, p, d)
        x = x + self.attn_s(self.norm_s(x))
        x = x + self.mlp(self.norm_m(x))
        return x.reshape(n, t, p, d)


class SyncEncoder(nn.Module):
    """(B, T, 3, H, W) frames at 25 fps -> (B, S * 8, out_dim) tokens, S = (T - 16) // 8 + 1 segments.

    Token j of segment s covers frames [8 s + 2 j, 8 s + 2 j + 2) (see `sync_token_times`). Normalisation mean 0.5,
    std 0.5 (Synchformer's). Each segment is encoded independently, so chunking never changes the result."""

    def __init__(self, cfg: SyncEncoderConfig):
        super().__init__()
        self.cfg = cfg
        grid = cfg.image_size // cfg.patch_size
        self.patch = nn.Conv3d(3, cfg.width, (cfg.tubelet, cfg.patch_size, cfg.patch_size),
                               stride=(cfg.tubelet, cfg.patch_size, cfg.patch_size))
        self.pos_space = nn.Parameter(torch.randn(grid * grid, cfg.width) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(cfg.tokens_per_segment, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(_DividedBlock(cfg.width, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.out_dim)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    @property
    def fps(self) -> float:
        return self.cfg.fps

    def num_tokens(self, num_frames: int) -> int:
        return num_sync_segments(num_frames, self.cfg.segment_frames, self.cfg.segment_stride) * \
            self.cfg.tokens_per_segment

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8/float -> (B, T, 3, S, S): short side to S, centre crop, mean 0.5 std 0.5; with
        frame_input "motion" the channels become the grey level and motion_gain x the signed differences to the
        previous and to the next frame (0 at the ends): static backgrounds cancel, small moving objects stand out."""
        x = prepare_frames(frames, self.cfg.image_size, "center_crop", (0.5,) * 3, (0.5,) * 3)
        return motion_input(x, self.cfg.motion_gain) if self.cfg.frame_input == "motion" else x

    def encode_segments(self, segments: torch.Tensor) -> torch.Tensor:
        """(N, segment_frames, 3, S, S) preprocessed -> (N, tokens_per_segment, out_dim)."""
        x = self.patch(segments.transpose(1, 2).to(self.proj.weight.dtype))  # (N, D, t, g, g)
        x = x.flatten(3).permute(0, 2, 3, 1)  # (N, t, P, D)
        x = x + self.pos_space[None, None] + self.pos_time[None, :, None]
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x.mean(dim=2)))

    def forward(self, frames: torch.Tensor, *, preprocessed: bool = False) -> torch.Tensor:
        x = frames if preprocessed else self.preprocess(frames)
        seg = segment_frames(x, self.cfg.segment_frames, self.cfg.segment_stride)  # (B, S, F, 3, H, W)
        b, s = seg.shape[:2]
        flat = seg.reshape(b * s, *seg.shape[2:])
        out = torch.cat([self.encode_segments(c) for c in flat.split(self.cfg.segments_per_batch)])
        return out.reshape(b, s * self.cfg.tokens_per_segment, -1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


