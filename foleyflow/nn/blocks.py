"""Transformer blocks of the MMAudio generator (Cheng et al., "MMAudio: Taming Multimodal Joint Training for
High-Quality Video-to-Audio Synthesis", CVPR 2025), an MM-DiT (SD3, Esser et al. 2024) with adaLN (DiT).

`StreamBlock` is one stream of a block: adaLN-modulated LayerNorm -> q, k, v (per-head RMSNorm on q and k, optional
RoPE) -> [attention, possibly joint with other streams] -> gated output projection -> gated SwiGLU feed-forward.
With `kernel_size > 1` the output projection and the feed-forward are 1-D convolutions over time (audio and
visual streams); with `kernel_size == 1` they are Linear (text). A `pre_only` stream only contributes q, k, v (the
visual/text streams of the last joint block, whose outputs nobody reads).
`JointBlock` runs three streams (audio latents, visual tokens, text tokens) through one attention.
`FinalBlock` is adaLN -> LayerNorm -> Conv1d(k=7).

Module and parameter names follow the reference (`attn.qkv`, `linear1`, `ffn`, `adaLN_modulation.1`, ...), so a
released state dict loads unchanged. The fused qkv projection keeps the reference's channel order
(head, head_dim, {q,k,v}) for the same reason.
"""
from __future__ import annotations

import torch
from torch import nn

from foleyflow.nn.layers import ChannelLastConv1d, ConvSwiGLU, SwiGLU, attention, modulate
from foleyflow.nn.rope import apply_rope


class QKV(nn.Module):
    """x (B, N, D) -> q, k, v (B, H, N, D / H) with RMSNorm on q and k and optional RoPE tables (2, N, Dh / 2)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.RMSNorm(dim // num_heads)
        self.k_norm = nn.RMSNorm(dim // num_heads)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, self.num_heads, -1, 3).permute(4, 0, 2, 1, 3)  # (3, B, H, N, Dh)
        q, k, v = qkv.unbind(0)
        q, k, v = self.q_norm(q), self.k_norm(k), v.contiguous()  # a strided v sends SDPA to its slow math path
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        return q, k, v


class StreamBlock(nn.Module):
    """One adaLN transformer stream. Call `pre_attention` and `post_attention` around a (joint) attention, or
    `forward` for a self-attention block. x: (B, N, D); cond: (B, 1, D) or per-token (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, pre_only: bool = False,
                 kernel_size: int = 3):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = QKV(dim, num_heads)
        if pre_only:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
            return
        hidden = int(dim * mlp_ratio)
        if kernel_size == 1:
            self.linear1 = nn.Linear(dim, dim)
            self.ffn = SwiGLU(dim, hidden)
        else:
            self.linear1 = ChannelLastConv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2)
            self.ffn = ConvSwiGLU(dim, hidden, kernel_size)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def pre_attention(self, x: torch.Tensor, cond: torch.Tensor, rope: torch.Tensor | None):
        """Returns ((q, k, v), modulation kept for `post_attention`)."""
        mod = self.adaLN_modulation(cond).chunk(2 if self.pre_only else 6, dim=-1)
        h = modulate(self.norm1(x), mod[0], mod[1])
        return self.attn(h, rope), mod[2:]

    def post_attention(self, x: torch.Tensor, attn_out: torch.Tensor, mod) -> torch.Tensor:
        if self.pre_only:
            return x
        gate_attn, shift_mlp, scale_mlp, gate_mlp = mod
        x = x + self.linear1(attn_out) * gate_attn
        return x + self.ffn(modulate(self.norm2(x), shift_mlp, scale_mlp)) * gate_mlp

    def forward(self, x: torch.Tensor, cond: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
        qkv, mod = self.pre_attention(x, cond, rope)
        return self.post_attention(x, attention(*qkv), mod)


class JointBlock(nn.Module):
    """Audio latents (per-frame condition, RoPE), visual tokens (global condition, aligned RoPE) and text tokens
    (global condition, no RoPE) attend jointly; each stream has its own weights."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, pre_only: bool = False):
        super().__init__()
        self.pre_only = pre_only
        self.latent_block = StreamBlock(dim, num_heads, mlp_ratio, kernel_size=3)
        self.clip_block = StreamBlock(dim, num_heads, mlp_ratio, pre_only=pre_only, kernel_size=3)
        self.text_block = StreamBlock(dim, num_heads, mlp_ratio, pre_only=pre_only, kernel_size=1)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, text: torch.Tensor, global_c: torch.Tensor,
                frame_c: torch.Tensor, audio_rope: torch.Tensor, visual_rope: torch.Tensor):
        a_qkv, a_mod = self.latent_block.pre_attention(audio, frame_c, audio_rope)
        v_qkv, v_mod = self.clip_block.pre_attention(visual, global_c, visual_rope)
        t_qkv, t_mod = self.text_block.pre_attention(text, global_c, None)
        na, nv = audio.shape[1], visual.shape[1]
        out = attention(*(torch.cat([a_qkv[i], v_qkv[i], t_qkv[i]], dim=2) for i in range(3)))
        audio = self.latent_block.post_attention(audio, out[:, :na], a_mod)
        if not self.pre_only:
            visual = self.clip_block.post_attention(visual, out[:, na:na + nv], v_mod)
            text = self.text_block.post_attention(text, out[:, na + nv:], t_mod)
        return audio, visual, text


class FinalBlock(nn.Module):
    """adaLN (shift, scale) -> LayerNorm -> Conv1d(k=7): (B, N, D) -> (B, N, out_dim)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = ChannelLastConv1d(dim, out_dim, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=-1)
        return self.conv(modulate(self.norm(x), shift, scale))
