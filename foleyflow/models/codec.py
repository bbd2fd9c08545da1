"""The trained audio codec shipped with foleyflow: a mel VAE and a Vocos-style vocoder for 16 kHz stereo, trained on
FoleyWorld (see foleyflow/assets/codec/README.md for the data, commands, seeds and measured quality).

The weights are stored as float16 safetensors; `load_vae` / `load_vocoder` cast them into float32 modules, so the
codec computes in fp32. Usage:

    from foleyflow.models.codec import load_bundled_codec
    vae, vocoder = load_bundled_codec()
"""
from __future__ import annotations

from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "codec"


def bundled_codec_paths() -> tuple[Path, Path]:
    """(VAE, vocoder) checkpoint paths of the bundled codec; a CheckpointError if the package lacks them."""
    from foleyflow.errors import CheckpointError

    paths = ASSET_DIR / "vae.safetensors", ASSET_DIR / "vocoder.safetensors"
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"the bundled codec weights are missing from {ASSET_DIR} ({', '.join(missing)}); "
                              "reinstall foleyflow or pass checkpoint paths")
    return paths


def load_bundled_codec(device: str = "cpu"):
    """(MelVAE, Vocoder) of the bundled codec, in eval mode, float32."""
    from foleyflow.models.vae import load_vae
    from foleyflow.models.vocoder import load_vocoder

    vae_path, voc_path = bundled_codec_paths()
    return load_vae(vae_path, device), load_vocoder(voc_path, device)
