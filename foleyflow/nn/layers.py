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
    """SwiGLU whose three projections are length-preserving 1-D convolutions over time: (B, T, dim) -> (B, T, dim).

    In float32 it runs as matrix products, not convolutions (the same sums in another order: outputs agree with the
    convolutions to about 1e-6 relative): the gate and value projections as one product of each token's k-token
    window, (B, T, k * dim) @ (k * dim, 2h), the output projection as k products of shifted hidden states. On the
    CPUs measured this beats oneDNN's convolution at the generator's shapes (docs/speed.md, "The same math"), and
    training and inference take the same path, so a policy's log-probabilities do not depend on whether gradients
    are on. The weights are rearranged on every call while gradients are taken; without gradients the rearranged
    weights are kept and rebuilt when w1, w2 or w3 change (their version counters and storage are checked). Other
    dtypes (bf16 inference copies) keep the convolutions, with gate and value fused by `fuse_for_inference`. Kept
    weights cost memory: about 63% of an MMAudio generator's float32 weights once more while it samples (small_16k
    0.37 GiB, large_44k 2.4 GiB); they are not copied with the module (deepcopy, pickling). Under bf16 autocast the
    products run in bf16 like the convolutions would (not bitwise the same). Even kernel sizes are refused (not
    length-preserving). `gemm = False` (on the class or a module) runs the convolutions in float32 too
    (benchmarks/bench_generator.py's fp32-conv mode, the schedule before session 18)."""

    gemm = True

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3, multiple_of: int = 256):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvSwiGLU needs an odd kernel size (length-preserving), got {kernel_size}")
        h = swiglu_hidden(hidden, multiple_of)
        pad = (kernel_size - 1) // 2
        self.w1 = ChannelLastConv1d(dim, h, kernel_size, padding=pad, bias=False)
        self.w2 = ChannelLastConv1d(h, dim, kernel_size, padding=pad, bias=False)
        self.w3 = ChannelLastConv1d(dim, h, kernel_size, padding=pad, bias=False)
        self.w13: torch.Tensor | None = None  # set by `fuse_for_inference`
        self._gemm: tuple | None = None       # (weights' state, gate+value (k*dim, 2h), output (k, h, dim))

    def fuse_for_inference(self) -> None:
        """Stacks w1 and w3 into one weight so inference runs one convolution (training must not use this; float32
        does not need it, see the class docstring)."""
        self.w13 = torch.cat([self.w1.weight, self.w3.weight]).detach()

    def __getstate__(self):    # copies (deepcopy, inference_copy, pickling) rebuild their own kept weights
        state = dict(self.__dict__)
        state["_gemm"] = None
        return state

    def _state(self) -> tuple | None:
        ws = [w.weight for w in (self.w1, self.w2, self.w3)]
        if any(w.is_inference() for w in ws):    # loaded under inference_mode: no version counter to watch
            return None
        return tuple((w._version, w.data_ptr(), w.device) for w in ws)

    def _gemm_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        def rearrange():
            k, dim = self.w1.kernel_size[0], self.w1.in_channels
            w13 = torch.cat([self.w1.weight, self.w3.weight]).permute(2, 1, 0).reshape(k * dim, -1)
            return w13.contiguous(), self.w2.weight.permute(2, 1, 0).contiguous()
        if (torch.is_grad_enabled() and any(w.weight.requires_grad for w in (self.w1, self.w2, self.w3))) or \
                torch.compiler.is_compiling():
            return rearrange()
        state = self._state()
        if state is None:
            return rearrange()
        kept = self._gemm            # one read: another thread may replace it meanwhile
        if kept is None or kept[0] != state:
            # built as normal tensors even under inference_mode, so a later pass with gradients can use them
            with torch.inference_mode(False), torch.no_grad():
                kept = (state, *rearrange())
            self._gemm = kept
        return kept[1], kept[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gemm and x.dtype == torch.float32 and self.w1.weight.dtype == torch.float32:
            return self._forward_gemm(x)
        if self.w13 is not None:
            h = F.conv1d(x.transpose(1, 2), self.w13, padding=self.w1.padding)
            a, b = h.transpose(1, 2).chunk(2, dim=-1)
            return self.w2(F.silu(a) * b)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

    def _forward_gemm(self, x: torch.Tensor) -> torch.Tensor:
        w13, w2 = self._gemm_weights()
        k, pad, t = w2.shape[0], self.w1.padding[0], x.shape[1]
        xp = F.pad(x, (0, 0, pad, pad)) if pad else x
        windows = torch.cat([xp[:, i:i + t] for i in range(k)], dim=-1) if k > 1 else x
        a, b = (windows @ w13).chunk(2, dim=-1)
        h = F.silu(a) * b
        out = h @ w2[pad]
        for i in range(k):
            s = i - pad                       # output t reads hidden t + s
            if s < 0 and t + s > 0:
                out[:, -s:] += h[:, :t + s] @ w2[i]
            elif s > 0 and t - s > 0:
                out[:, :t - s] += h[:, s:] @ w2[i]
        return out


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
