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

Principal components (`components` > 0): a token is then the projection of the stacked frames (minus their mean)
on the first `components` principal directions of training tokens (`fit_principal_components`, fitted by
`recipes/fit_mel_pca.py` on a `train` cache), and decoding is the transpose: a linear codec with fewer, decorrelated
channels (at k = 2 and 80 mels, 64 components keep 98.9% of FoleyWorld's token variance). Its checkpoint holds the
mean (n_mels * k,) and the basis (n_mels * k, components); the encoding is then a projection, not exact.
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
    components: int = 0               # > 0: tokens are projections on this many principal directions

    @property
    def stacked_dim(self) -> int:
        """Values of a token's stacked frames: n_mels * frames_per_token."""
        return self.n_mels * self.frames_per_token

    @property
    def latent_dim(self) -> int:
        """Channels per audio channel: `components` if set, else n_mels * frames_per_token."""
        return self.components or self.stacked_dim

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
        if not 0 <= cfg.components <= cfg.stacked_dim:
            raise ValueError(f"components must be between 0 and {cfg.stacked_dim}, got {cfg.components}")
        self.cfg = cfg
        if cfg.components:   # filled by load / fit; identity-free placeholders until then
            self.register_buffer("pca_mean", torch.zeros(cfg.stacked_dim))
            self.register_buffer("pca_basis", torch.zeros(cfg.stacked_dim, cfg.components))

    def encode(self, mel: torch.Tensor):
        """(N, n_mels, T) log-mel -> point-mass posterior over (N, n_mels * k, T // k); T must be a multiple of k."""
        from foleyflow.models.vae import DiagonalGaussian

        n, m, t = mel.shape
        k = self.cfg.frames_per_token
        if m != self.cfg.n_mels or t % k:
            raise ValueError(f"mel of shape {tuple(mel.shape)}: expected {self.cfg.n_mels} mels and a multiple of "
                             f"{k} frames")
        z = mel.reshape(n, m, t // k, k).permute(0, 3, 1, 2).reshape(n, k * m, t // k)
        if self.cfg.components:
            z = torch.einsum("nct,cd->ndt", z - self.pca_mean[None, :, None], self.pca_basis)
        return DiagonalGaussian(z, torch.full_like(z, LOGVAR))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, n_mels * k, T') -> (N, n_mels, T' * k) log-mel."""
        n, c, t = z.shape
        k, m = self.cfg.frames_per_token, self.cfg.n_mels
        if c != self.cfg.latent_dim:
            raise ValueError(f"tokens have {c} channels, the codec's have {self.cfg.latent_dim}")
        if self.cfg.components:
            z = torch.einsum("ndt,cd->nct", z, self.pca_basis) + self.pca_mean[None, :, None]
        return z.reshape(n, k, m, t).permute(0, 2, 3, 1).reshape(n, m, t * k)

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None):
        post = self.encode(mel)
        return self.decode(post.mean), post


def fit_principal_components(tokens: torch.Tensor, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (N, n_mels * k) stacked-frame tokens -> (mean (n_mels * k,), basis (n_mels * k, components)): the
    leading eigenvectors of their covariance (float64), each with its largest entry positive (a fixed sign)."""
    x = tokens.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(1, x.shape[0] - 1)
    _, vecs = torch.linalg.eigh(cov)
    basis = vecs.flip(1)[:, :components]
    sign = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    return mean.float(), (basis * sign).float()


def save_mel_codec(path, cfg: MelCodecConfig | None = None, *, provenance: dict | None = None,
                   mean: torch.Tensor | None = None, basis: torch.Tensor | None = None):
    """Writes the checkpoint (kind 'mel_codec') that `foleyflow.models.vae.load_vae` turns into a codec: the config
    alone, or with `components` > 0 also the principal-component `mean` and `basis`."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    cfg = cfg or MelCodecConfig()
    codec = MelFrameCodec(cfg)  # validates
    tensors = {}
    if cfg.components:
        if mean is None or basis is None or tuple(basis.shape) != tuple(codec.pca_basis.shape) \
                or tuple(mean.shape) != tuple(codec.pca_mean.shape):
            raise ValueError(f"a {cfg.components}-component codec needs mean ({cfg.stacked_dim},) and basis "
                             f"({cfg.stacked_dim}, {cfg.components})")
        tensors = {"pca_mean": mean.float().contiguous(), "pca_basis": basis.float().contiguous()}
    return save_checkpoint(path, tensors, kind=CKPT_KIND, config=config_to_json(cfg), provenance=provenance)
