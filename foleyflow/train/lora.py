"""Low-rank adaptation of a network's Linear layers (LoRA, Hu et al. 2022), our own small wrapper.

`add_lora(net, rank, alpha, targets)` replaces every `nn.Linear` whose dotted name ends with one of `targets` by a
`LoraLinear`: y = W x + b + (alpha / rank) * B(A(x)), with W, b frozen, A (rank, in) drawn from a seeded generator
(Kaiming-uniform, as the paper's reference code) and B (out, rank) zero, so the adapted network computes exactly what
the original did until the first update. Every other parameter is frozen. `merge_lora(net)` returns a copy with
W + (alpha / rank) B A folded back into plain Linear layers: the same state-dict keys as the original network, so the
result saves and loads like any checkpoint of it (e.g. `save_generator`).

Why not `peft`: it is not installed with foleyflow (it pulls transformers and accelerate), and the generator's
Linear layers need nothing beyond the few lines here. Departure from the paper: no LoRA dropout.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from foleyflow.errors import ConfigError


class LoraLinear(nn.Module):
    """A frozen Linear `base` plus a trainable low-rank update; input (..., in_features) -> (..., out_features)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = float(alpha) / rank
        a = torch.empty(rank, base.in_features)
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform_(a=sqrt(5)) on a (rank, in) weight
        a.uniform_(-bound, bound, generator=generator)
        w = base.weight
        self.lora_a = nn.Parameter(a.to(device=w.device, dtype=w.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))

    @property
    def weight(self) -> torch.Tensor:  # code that reads `.weight` (dtype or device probes) sees the base's
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * nn.functional.linear(nn.functional.linear(x, self.lora_a), self.lora_b)

    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function (up to rounding)."""
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += self.scale * (self.lora_b @ self.lora_a).to(out.weight.dtype)
        return out.requires_grad_(True)


def add_lora(net: nn.Module, rank: int, alpha: float, targets: list[str] | tuple[str, ...], *, seed: int = 0
             ) -> list[str]:
    """Adapts `net` in place: freezes every parameter, wraps the Linear layers whose names end with a target (a
    dotted suffix, e.g. "attn.qkv") in LoraLinear. Returns the wrapped names; ConfigError when nothing matches."""
    if rank < 1:
        raise ConfigError(f"lora.rank must be >= 1 to adapt a network, got {rank}")
    net.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    names = [name for name, m in net.named_modules()
             if isinstance(m, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]
    if not names:
        raise ConfigError(f"lora.targets {list(targets)} match no Linear layer of the network")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, LoraLinear(getattr(parent, child), rank, alpha, g))
    return names


def merge_lora(net: nn.Module) -> nn.Module:
    """A deep copy of `net` with every LoraLinear folded into a plain Linear (the original network's layout)."""
    out = copy.deepcopy(net)
    for name, m in list(out.named_modules()):
        if isinstance(m, LoraLinear):
            parent_name, _, child = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, child, m.merged())
    return out


def trainable_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]
