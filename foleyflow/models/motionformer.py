"""Synchformer's visual branch: MotionFormer with divided space-time attention (Iashin et al., "Synchformer", ICASSP
2024; Patrick et al., "Keeping Your Eye on the Ball", NeurIPS 2021 for MotionFormer; TimeSformer's divided attention).

Written in our own code to be numerically the same as the reference (v-iashin/Synchformer as used by MMAudio), so
that released Synchformer weights can be used through `adapters.SynchformerAdapter`; parity is checked against
`../shared/fixtures/mmaudio/mmaudio_synchformer_visual_tiny.safetensors`. Parameter names follow the reference's
state dict (without its `vfeat_extractor.` prefix), so a released checkpoint needs only that prefix removed.

Per segment of 16 frames (224 px, normalised with mean/std 0.5):
  Conv3d tubelets 2 x 16 x 16 -> (t=8) x (14 x 14) patches of width D; a class token; positional embedding =
  spatial (shared over time) + temporal (shared over space); class token gets the first spatial position.
  Blocks: x += TimeAttn(LN3(x)); x += SpaceAttn(LN1(x)); x += MLP(LN2(x)). Divided attention: patch tokens attend
  within their time line (time) or frame (space), each group with the class token's key/value prepended; the class
  token attends to all tokens. Then LN, class token dropped, and per time step a pre-norm transformer encoder layer
  with its own class token aggregates the 14 x 14 patches: (8, D) per segment. Temporal aggregation is the identity.
Departures: no dropout or drop-path (inference parity; add them for training), the unused 2-D `patch_embed` is kept
only so state dicts load strictly, and no positional-embedding interpolation (image_size fixes the grid).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MotionFormerConfig:
    image_size: int = 224
    patch_size: int = 16
    tubelet: int = 2
    segment_frames: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    eps: float = 1e-6

    @property
    def frames_out(self) -> int:
        return self.segment_frames // self.tubelet

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


class _Proj(nn.Module):
    def __init__(self, conv: nn.Module):
        super().__init__()
        self.proj = conv


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _DividedAttention(nn.Module):
    """Attention within groups of patch tokens (time lines or frames) plus a class token seen by every group."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, over: str) -> torch.Tensor:
        """x (B, 1 + frames * P, D), patches frame-major; over = "time" or "space"."""
        b, n, d = x.shape
        h = self.heads
        p = (n - 1) // frames
        q, k, v = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (B, H, N, dh)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (B, H, 1, dh)

        def group(t):  # (B, H, F*P, dh) -> (B, H, G, L, dh)
            t = t.reshape(b, h, frames, p, -1)
            return t.transpose(2, 3) if over == "time" else t

        qg, kg, vg = group(q[:, :, 1:]), group(k[:, :, 1:]), group(v[:, :, 1:])
        g = qg.shape[2]
        kg = torch.cat([k[:, :, None, :1].expand(-1, -1, g, -1, -1), kg], dim=3)
        vg = torch.cat([v[:, :, None, :1].expand(-1, -1, g, -1, -1), vg], dim=3)
        out = F.scaled_dot_product_attention(qg, kg, vg)  # (B, H, G, L, dh)
        if over == "time":
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(b, h, frames * p, -1)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim, eps=eps) for _ in range(3))
        self.attn, self.timeattn = _DividedAttention(dim, heads), _DividedAttention(dim, heads)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, frames: int):
        x = x + self.timeattn(self.norm3(x), frames, "time")
        x = x + self.attn(self.norm1(x), frames, "space")
        return x + self.mlp(self.norm2(x))


class _ClsAggregator(nn.Module):
    """Pre-norm transformer encoder layer (GELU) over [cls, tokens]; returns the class token's output."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(dim, int(mlp_ratio * dim)), nn.Linear(int(mlp_ratio * dim), dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)

    def forward(self, x):  # (N, L, D) -> (N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y, need_weights=False)[0]
        x = x + self.linear2(F.gelu(self.linear1(self.norm2(x))))
        return x[:, 0]


class MotionFormer(nn.Module):
    """Segments (B, S, segment_frames, 3, S_px, S_px), normalised -> (B, S, segment_frames / tubelet, width).

    The call convention of MMAudio's Synchformer visual branch, so it plugs into `SynchformerAdapter` directly."""

    def __init__(self, cfg: MotionFormerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MotionFormerConfig()
        d, p = cfg.width, cfg.patch_size
        self.patch_embed = _Proj(nn.Conv2d(3, d, p, stride=p))  # unused (kept for state-dict compatibility)
        self.patch_embed_3d = _Proj(nn.Conv3d(3, d, (cfg.tubelet, p, p), stride=(cfg.tubelet, p, p)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid ** 2, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.frames_out, d))
        for param in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(param, std=0.02)
        self.blocks = nn.ModuleList(_Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.eps) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=cfg.eps)
        self.spatial_attn_agg = _ClsAggregator(d, cfg.num_heads, cfg.mlp_ratio, cfg.eps)
        self.patch_embed.requires_grad_(False)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        b, s, t, c, h, w = segments.shape
        x = segments.reshape(b * s, t, c, h, w).transpose(1, 2)  # (BS, C, T, H, W)
        x = self.patch_embed_3d.proj(x.to(self.pos_embed.dtype))  # (BS, D, t, g, g)
        bs, d, frames, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # (BS, t*g*g, D), frame-major
        pos = self.pos_embed[:, 1:].repeat(1, frames, 1) + self.temp_embed.repeat_interleave(gh * gw, dim=1)
        x = torch.cat([self.cls_token.expand(bs, -1, -1) + self.pos_embed[:, :1], x + pos], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        x = self.norm(x[:, 1:])  # (BS, t*P, D)
        x = self.spatial_attn_agg(x.reshape(bs * frames, gh * gw, d))  # (BS*t, D)
        return x.reshape(b, s, frames, d)
