"""Rotary position embeddings (RoPE, Su et al. 2021) with the rate-aligned variant of MMAudio (Cheng et al. 2025).

Pairs of adjacent channels (2i, 2i+1) of every head are rotated by angle `pos * freq_i`, with
`freq_i = freq_scaling / theta ** (2i / head_dim)`. MMAudio aligns a slower stream (8 fps visual tokens) with the
audio latents by scaling its frequencies by `audio_len / visual_len`, so visual token j sits at the audio position
`j * audio_len / visual_len` (`aligned_rope_tables`). Tables are computed and applied in float32 whatever the
dtype of the activations (as the reference does), and are rebuilt whenever the sequence lengths change.
"""
from __future__ import annotations

import torch


def rope_tables(length: int, head_dim: int, *, theta: float = 10000.0, freq_scaling: float = 1.0,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Cos/sin tables for positions 0..length-1: a float32 tensor (2, length, head_dim // 2) = (cos, sin)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    pos = torch.arange(length, dtype=torch.float32, device=device)
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    freqs = freqs * freq_scaling
    angles = pos[:, None] * freqs[None, :]
    return torch.stack([torch.cos(angles), torch.sin(angles)])


def aligned_rope_tables(length: int, head_dim: int, reference_length: int, **kwargs) -> torch.Tensor:
    """Tables for a stream of `length` tokens spanning the same time as `reference_length` tokens at rate 1."""
    return rope_tables(length, head_dim, freq_scaling=reference_length / length, **kwargs)


def apply_rope(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Rotates x (..., N, head_dim) by `tables` (2, N, head_dim // 2); computed in float32, returned in x.dtype."""
    cos, sin = tables[0], tables[1]
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1)
    return out.flatten(-2).to(x.dtype)
