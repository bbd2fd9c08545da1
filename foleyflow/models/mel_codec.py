"""The mel-frame codec: the generator works on the log-mel itself, `frames_per_token` mel frames per token.

Flow matching directly on mel spectrograms is what Grad-TTS (Popov et al. 2021) and Matcha-TTS (Mehta et al. 2024)
do. Here it replaces the mel VAE of MMAudio's codec where that VAE is the ceiling (docs/default_model.md: FoleyWorld's
small VAE keeps class accuracy 0.37 and pan error 0.21 of the true audio, Griffin-Lim on the true mel 0.88 and 0.08).

The codec has the VAE's interface (`encode` -> `DiagonalGaussian`, `decode`, a `cfg` with `mel_setting`, `n_mels`,
`latent_dim` and `time_downsample`), so caches (`foleyflow extract-latents`), training, bundles and the pipeline use it
through the same code path: `encode_channels` / `decode_channels` in `foleyflow.models.vae` fold stereo channels into
the batch for either. A token stacks `frames_per_token` consecutive frames: the latent of a mono log-mel
(N, n_mels, T) is (N, n_mels * k, T // k), channel index `j * n_mels + m` for frame j of the token and mel bin m.
With k = 2 at 16 kHz a token spans 512 samples, the VAE's latent rate (31.25 per second), so the generator's sequence
lengths are those of the VAE path. The encoding is exact: `decode(encode(mel).mean)` is the mel. Its posterior is a
point mass (`logvar` fixed at LOGVAR, std about 3e-7), so latent statistics and sampling code need no special case.

No weights: the checkpoint (kind 'mel_codec') holds only its config, so the codec is named in a bundle like a VAE.
The generator normalises its targets per channel (per mel bin and frame slot) with statistics from the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CKPT_KIND = "mel_codec"
LOGVAR = -30.0


@dataclass
class MelCodecConfig:
    mel_setting: str = "16k"          # foleyflow.audio.MEL_SETTINGS key
    n_mels: int = 80
    frames_per_token: int = 2

    @property
    def latent_dim(self) -> int:
        """Channels per audio channel: n_mels * frames_per_token."""
        return self.n_mels * self.frames_per_token

    @property
    def time_downsample(self) -> int:
        """Mel frames per token."""
        return self.frames_per_token


class MelFrameCodec(nn.Module):
    """Packs log-mel frames into tokens and back (exact, no parameters)."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        from foleyflow.audio import MEL_SETTINGS

        if cfg.mel_setting not in MEL_SETTINGS:
            raise ValueError(f"unknown mel setting {cfg.mel_setting!r} (one of {', '.join(MEL_SETTINGS)})")
        if cfg.n_mels != MEL_SETTINGS[cfg.mel_setting].n_mels:
            raise ValueError(f"mel setting {cfg.mel_setting} has {MEL_SETTINGS[cfg.mel_setting].n_mels} mels, "
                             f"not {cfg.n_mels}")
        if not 1 <= cfg.frames_per_token <= 16:
            raise ValueError(f"frames_per_token must be between 1 and 16, got {cfg.frames_per_token}")
        self.cfg = cfg

    def encode(self, mel: torch.Tensor):
        """(N, n_mels, T) log-mel -> point-mass posterior over (N, n_mels * k, T // k); T must be a multiple of k."""
        from foleyflow.models.vae import DiagonalGaussian

        n, m, t = mel.shape
        k = self.cfg.frames_per_token
        if m != self.cfg.n_mels or t % k:
            raise ValueError(f"mel of shape {tuple(mel.shape)}: expected {self.cfg.n_mels} mels and a multiple of "
                             f"{k} frames")
        z = mel.reshape(n, m, t // k, k).permute(0, 3, 1, 2).reshape(n, k * m, t // k)
        return DiagonalGaussian(z, torch.full_like(z, LOGVAR))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, n_mels * k, T') -> (N, n_mels, T' * k) log-mel."""
        n, c, t = z.shape
        k, m = self.cfg.frames_per_token, self.cfg.n_mels
        if c != k * m:
            raise ValueError(f"tokens have {c} channels, the codec packs {k} x {m}")
        return z.reshape(n, k, m, t).permute(0, 2, 3, 1).reshape(n, m, t * k)

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None):
        post = self.encode(mel)
        return self.decode(post.mean), post


def save_mel_codec(path, cfg: MelCodecConfig | None = None, *, provenance: dict | None = None):
    """Writes the weightless checkpoint (kind 'mel_codec') that `foleyflow.models.vae.load_vae` turns into a codec."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    cfg = cfg or MelCodecConfig()
    MelFrameCodec(cfg)  # validates
    return save_checkpoint(path, {}, kind=CKPT_KIND, config=config_to_json(cfg), provenance=provenance)
