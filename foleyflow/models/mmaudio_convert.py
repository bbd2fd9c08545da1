"""Conversion between released MMAudio generator state dicts (hkchengrex/MMAudio, `networks.py`) and foleyflow's
`Generator`.

Decision: foleyflow's generator uses the reference's module and parameter names and tensor layouts (including the
fused qkv channel order), so a released state dict *is* a foleyflow state dict. That keeps community checkpoints,
fine-tunes and adapters usable without a translation table that could drift. The conversion therefore only
- drops the non-persistent tables that some checkpoints carry (`t_embed.freqs`, `latent_rot`, `clip_rot`); we
  rebuild them from the config and the duration;
- infers a `GeneratorConfig` from the tensor shapes (`config_from_mmaudio`), and checks every key and shape.
Going back (`to_mmaudio`) is the identity on the remaining keys, so a round trip is exact.
"""
from __future__ import annotations

import dataclasses

import torch

from foleyflow.errors import CheckpointError

DERIVED_KEYS = ("t_embed.freqs", "latent_rot", "clip_rot")


def from_mmaudio(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released MMAudio generator state dict -> foleyflow Generator state dict (same tensors, derived tables
    removed). A `net.`/`module.` prefix, as some training wrappers write, is stripped."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "net."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k not in DERIVED_KEYS:
            out[k] = v
    return out


def to_mmaudio(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """foleyflow Generator state dict -> the reference layout (loadable by MMAudio's `load_weights`)."""
    return dict(state)


def _shape(state: dict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"not an MMAudio generator state dict: missing '{key}'")
    v = state[key]
    return tuple(v.shape) if hasattr(v, "shape") else tuple(v)


def config_from_mmaudio(state: dict, **overrides):
    """Infers the GeneratorConfig of a released state dict (tensors, or a key -> shape mapping as in
    `mmaudio_released_configs.json`). Time-grid fields (sample_rate, samples_per_latent) follow the latent width:
    20 channels -> 16 kHz / 512, 40 -> 44.1 kHz / 1024; override them for other codecs."""
    from foleyflow.models.generator import GeneratorConfig

    state = from_mmaudio(state) if all(hasattr(v, "shape") for v in state.values()) else {
        k: v for k, v in state.items() if k not in DERIVED_KEYS}
    d, latent = _shape(state, "audio_input_proj.0.weight")[:2]
    head_dim = _shape(state, "joint_blocks.0.latent_block.attn.q_norm.weight")[0]
    v2 = "clip_input_proj.2.w1.weight" in state
    joint = len({k.split(".")[1] for k in state if k.startswith("joint_blocks.")})
    fused = len({k.split(".")[1] for k in state if k.startswith("fused_blocks.")})
    ffn_hidden = _shape(state, "joint_blocks.0.latent_block.ffn.w1.weight")[0]
    mlp_ratio = 4.0 if ffn_hidden == _shape(state, "global_cond_mlp.w1.weight")[0] else None
    if mlp_ratio is None:
        raise CheckpointError("cannot infer mlp_ratio of this MMAudio state dict; pass it as an override")
    text_len, text_dim = _shape(state, "empty_string_feat")
    fields = dict(latent_channels=latent, hidden_dim=d, num_heads=d // head_dim, num_joint_blocks=joint,
                  num_audio_blocks=fused, mlp_ratio=mlp_ratio, v2=v2, text_len=text_len, text_dim=text_dim,
                  visual_dim=_shape(state, "empty_clip_feat")[1], sync_dim=_shape(state, "empty_sync_feat")[1])
    if latent == 40:
        fields.update(sample_rate=44100, samples_per_latent=1024)
    fields.update(overrides)
    return dataclasses.replace(GeneratorConfig(), **fields)


def check_fits(expected: dict[str, tuple[int, ...]], state_shapes: dict[str, tuple[int, ...]]) -> None:
    """Raises CheckpointError naming the first missing, unexpected or mis-shaped key."""
    missing = [k for k in expected if k not in state_shapes]
    extra = [k for k in state_shapes if k not in expected]
    if missing or extra:
        raise CheckpointError(f"MMAudio state dict does not fit: {len(missing)} missing (e.g. {missing[:1]}), "
                              f"{len(extra)} unexpected (e.g. {extra[:1]})")
    for k, shape in expected.items():
        if tuple(state_shapes[k]) != tuple(shape):
            raise CheckpointError(f"MMAudio state dict does not fit: '{k}' is {tuple(state_shapes[k])}, "
                                  f"expected {tuple(shape)}")


def load_mmaudio(state: dict[str, torch.Tensor], **overrides):
    """Builds a Generator from a released MMAudio state dict (already read from disk by the caller)."""
    from foleyflow.checkpoint import load_into
    from foleyflow.models.generator import Generator

    cfg = config_from_mmaudio(state, **overrides)
    net = Generator(cfg)
    load_into(net, from_mmaudio(state), what="MMAudio generator")
    return net
