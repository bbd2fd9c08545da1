"""Small building blocks of MMAudio-style diffusion transformers (Cheng et al., "MMAudio", CVPR 2025; DiT,
Peebles & Xie 2023; SwiGLU, Shazeer 2020).

- `ChannelLastConv1d`: a Conv1d over (B, T, C) tensors (weights stored as nn.Conv1d stores them).
- `SwiGLU` / `ConvSwiGLU`: w2(silu(w1 x) * w3 x) without biases; the hidden width is `int(2 * hidden / 3)` rounded
  up to a multiple of 256, as in MMAudio (and SD3's reference MLP), so that released weights fit.
- `modulate`: the adaLN modulation x * (1 + scale) + shift.
- `attention`: scaled dot-product attention over (B, H, N, Dh) returning (B, N, H * Dh).
- `TimestepEmbedder`: sinusoidal features of t in [0, 1] (no x1000) -> MLP, DiT style with MMAudio's constants.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden(hidden: int, multiple_of: int = 256) -> int:
    """The hidden width MMAudio's (Conv)MLP actually uses for a nominal `hidden` width."""
    h = int(2 * hidden / 3)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


class ChannelLastConv1d(nn.Conv1d):
    """nn.Conv1d applied to (B, T, C) inputs, returning (B, T, C_out) (length-preserving with padding=(k-1)/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class SwiGLU(nn.Module):
    """Token-wise SwiGLU feed-forward: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, hidden: int, multiple_of: int = 256):
        super().__init__()
        h = swiglu_hidden(hidden, multiple_of)
        self.w1 = nn.Linear(dim, h, bias=False)
        self.w2 = nn.Linear(h, dim, bias=False)
        self.w3 = nn.Linear(dim, h, bias=False)
        self.w13: torch.Tensor | None = None  # set by `fuse_for_inference`

    def fuse_for_inference(self) -> None:
        """Stacks w1 and w3 into one weight so inference runs one GEMM (training must not use this)."""
        self.w13 = torch.cat([self.w1.weight, self.w3.weight]).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13 is not None:
            a, b = F.linear(x, self.w13).chunk(2, dim=-1)
            return self.w2(F.silu(a) * b)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ConvSwiGLU(nn.Module):
    """SwiGLU whose three projections are length-preserving 1-D convolutions over time: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3, multiple_of: int = 256):
        super().__init__()
        h = swiglu_hidden(hidden, multiple_of)
        pad = (kernel_size - 1) // 2
        self.w1 = ChannelLastConv1d(dim, h, kernel_size, padding=pad, bias=False)
        self.w2 = ChannelLastConv1d(h, dim, kernel_size, padding=pad, bias=False)
        self.w3 = ChannelLastConv1d(dim, h, kernel_size, padding=pad, bias=False)
        self.w13: torch.Tensor | None = None  # set by `fuse_for_inference`

    def fuse_for_inference(self) -> None:
        """Stacks w1 and w3 into one weight so inference runs one convolution (training must not use this)."""
        self.w13 = torch.cat([self.w1.weight, self.w3.weight]).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13 is not None:
            h = F.conv1d(x.transpose(1, 2), self.w13, padding=self.w1.padding)
            a, b = h.transpose(1, 2).chunk(2, dim=-1)
            return self.w2(F.silu(a) * b)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: x * (1 + scale) + shift (shift/scale broadcast over tokens)."""
    return x * (1 + scale) + shift


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full (unmasked) attention. q, k, v: (B, H, N, Dh) -> (B, N, H * Dh)."""
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).flatten(2)


class TimestepEmbedder(nn.Module):
    """t (B,) in [0, 1] -> (B, dim). Features [cos(t f), sin(t f)] with f_i = (1e4 / max_period) / 1e4^(2i / F)
    for F = `num_freqs` (MMAudio v1: F = 256, max_period 1e4; v2: F = dim, max_period 1), then Linear-SiLU-Linear."""

    def __init__(self, dim: int, num_freqs: int, max_period: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_freqs, self.max_period = num_freqs, max_period

    def frequencies(self, device: torch.device) -> torch.Tensor:
        """float32 (num_freqs / 2,); computed on the fly so a bf16 cast of the module cannot round them."""
        f = 1.0 / (10000 ** (torch.arange(0, self.num_freqs, 2, dtype=torch.float32, device=device) / self.num_freqs))
        return (10000 / self.max_period) * f

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t[:, None].float() * self.frequencies(t.device)[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))
