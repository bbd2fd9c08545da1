"""Generator checkpoints: save and load a `Generator` with its config (safetensors, kind "generator").

The checkpoint holds every parameter and persistent buffer, including the latent mean/std of the codec it was trained
with and the empty-text features of its text encoder, so sampling needs nothing else from the training run.
"""
from __future__ import annotations

from pathlib import Path

import torch

from foleyflow.errors import CheckpointError, ConfigError
from foleyflow.models.generator import Generator, GeneratorConfig

CKPT_KIND = "generator"


def save_generator(path: str | Path, net: Generator, *, provenance: dict | None = None,
                   dtype: torch.dtype | None = None) -> Path:
    """Writes `net` (optionally cast to `dtype`, e.g. torch.float16 for bundling) with its config."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    sd = net.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return save_checkpoint(path, sd, kind=CKPT_KIND, config=config_to_json(net.cfg), provenance=provenance)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Loads a generator checkpoint (float32 on `device`); wrong kinds or shapes give a one-line CheckpointError."""
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict

    tensors, meta = load_checkpoint(path, kind=CKPT_KIND)
    try:
        cfg = from_dict(GeneratorConfig, checkpoint_config(meta))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its generator config is not valid ({e})") from None
    from foleyflow.checkpoint import build_checked

    net = build_checked(lambda: Generator(cfg), tensors, what=f"generator ({path})")  # config vs shapes first
    load_into(net, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
              what=f"generator ({path})")
    return net.to(device).eval()
