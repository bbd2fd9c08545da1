"""Mel-to-waveform vocoder: a Vocos-style ConvNeXt backbone with an inverse-STFT head.

Implements Vocos (Siuzdak 2024, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders for
audio synthesis"): a Conv1d embedding, a stack of ConvNeXt blocks (depthwise conv k=7, LayerNorm, pointwise MLP with
GELU, layer scale, residual) at the mel frame rate, and a head that predicts per frame a log-magnitude and a phase
for every STFT bin; the waveform is their inverse STFT. All layers run at the frame rate (no upsampling convolutions),
which is what makes it fast on CPU compared with HiFi-GAN / BigVGAN (MMAudio's vocoder).

Where we depart from Vocos:
- The inverse STFT uses 'same' framing aligned with our mel front-end (`foleyflow.audio`): frame i is centred at
  sample (i + 0.5) * hop, so T mel frames give exactly T * hop samples, the length the front-end maps back to.
- The head's log-magnitude biases start at `INIT_LOG_MAGNITUDE` (a quiet e^-5 per bin) instead of 0: starting from
  unit magnitudes in every bin, training spends its first hundreds of steps only turning the level down (on one clip,
  mel L1 after 300 steps: 0.16 with this start, 0.57 without).
- The vocoder is mono; multi-channel audio is vocoded channel by channel (`vocode_channels`), matching the per-channel
  VAE (see `foleyflow.models.vae`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import istft_same
from foleyflow.errors import CheckpointError

CKPT_KIND = "vocoder"
GRIFFIN_LIM_KIND = "vocoder_griffin_lim"  # a checkpoint with a config and no weights: see GriffinLimVocoder
INIT_LOG_MAGNITUDE = -5.0


@dataclass
class VocoderConfig:
    mel_setting: str = "16k"  # foleyflow.audio.MEL_SETTINGS key: n_mels and hop must match the front-end
    n_mels: int = 80
    hop_length: int = 256
    n_fft: int = 1024  # of the inverse STFT head
    dim: int = 192
    intermediate_dim: int = 576
    num_layers: int = 6
    kernel_size: int = 7
    max_log_magnitude: float = 4.6  # exp(4.6) ~ 100: Vocos clips the predicted magnitude at 1e2


PRESETS = {
    "tiny_16k": VocoderConfig(dim=32, intermediate_dim=64, num_layers=2),
    "small_16k": VocoderConfig(),
    "base_16k": VocoderConfig(dim=384, intermediate_dim=1152, num_layers=8),
    "small_44k": VocoderConfig("44k", 128, 512, 2048),
}


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, dim, T)
        h = self.dwconv(x).transpose(1, 2)
        h = self.fc2(F.gelu(self.fc1(self.norm(h)))) * self.scale
        return x + h.transpose(1, 2)


class Vocoder(nn.Module):
    """(N, n_mels, T) log-mel (the front-end's scale) -> (N, T * hop_length) waveform."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        if cfg.n_fft < cfg.hop_length or (cfg.n_fft - cfg.hop_length) % 2:
            raise ValueError("vocoder n_fft must be >= hop_length and differ from it by an even number")
        self.cfg = cfg
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, kernel_size=7, padding=3)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size,
                                                   1.0 / cfg.num_layers) for _ in range(cfg.num_layers)])
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.apply(self._init)
        with torch.no_grad():
            self.head.bias[: cfg.n_fft // 2 + 1] = INIT_LOG_MAGNITUDE

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel)
        x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2).float()  # (N, n_fft + 2, T)
        log_mag, phase = h.chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=self.cfg.max_log_magnitude))
        spec = torch.polar(mag, phase)
        return istft_same(spec, self.cfg.n_fft, self.cfg.hop_length, self.window.float())


def vocode_channels(vocoder: Vocoder, mel: torch.Tensor) -> torch.Tensor:
    """(B, C, n_mels, T) -> (B, C, T * hop_length): every channel vocoded on its own (one batched call), or as the
    vocoder vocodes a clip's channels together when it can (`GriffinLimVocoder` with stereo "coherent")."""
    if hasattr(vocoder, "vocode_channels"):
        return vocoder.vocode_channels(mel)
    b, c, m, t = mel.shape
    return vocoder(mel.reshape(b * c, m, t)).reshape(b, c, -1)


@dataclass
class GriffinLimConfig:
    mel_setting: str = "16k"
    n_mels: int = 80
    n_iter: int = 32
    momentum: float = 0.99
    seed: int = 0
    # the channels of a clip: "independent" (phases of their own: uncorrelated channels, the bundles before session
    # 15) or "coherent" (one phase per clip, foleyflow.audio.griffin_lim_stereo: correlated as a panned source is)
    stereo: str = "independent"
    channel_iters: int = 0     # coherent: per-channel iterations after the shared phase (griffin_lim_stereo)


STEREO_MODES = ("independent", "coherent")


class GriffinLimVocoder(nn.Module):
    """The untrained baseline vocoder (foleyflow.audio.griffin_lim: filterbank pseudo-inverse + fast Griffin-Lim) behind
    the Vocoder interface, so a bundle can name it when no trained vocoder measures better. Deterministic (fixed seed
    of the initial phases). It keeps each channel's level but not the time difference between channels; with stereo
    "coherent" the channels of a clip share their phases (`vocode_channels`)."""

    def __init__(self, cfg: GriffinLimConfig):
        super().__init__()
        if cfg.stereo not in STEREO_MODES:
            raise CheckpointError(f"Griffin-Lim stereo must be one of {', '.join(STEREO_MODES)}, got {cfg.stereo!r}")
        self.cfg = cfg

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        from foleyflow.audio import griffin_lim

        return griffin_lim(mel, self.cfg.mel_setting, n_iter=self.cfg.n_iter, momentum=self.cfg.momentum,
                           seed=self.cfg.seed)

    def vocode_channels(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, C, n_mels, T) -> (B, C, T * hop): per channel, or with one phase per clip when stereo is coherent."""
        if self.cfg.stereo == "independent":
            b, c, m, t = mel.shape
            return self(mel.reshape(b * c, m, t)).reshape(b, c, -1)
        from foleyflow.audio import griffin_lim_stereo

        return griffin_lim_stereo(mel, self.cfg.mel_setting, n_iter=self.cfg.n_iter, momentum=self.cfg.momentum,
                                  seed=self.cfg.seed, channel_iters=self.cfg.channel_iters)


def save_griffin_lim(path, cfg: GriffinLimConfig | None = None, *, provenance: dict | None = None):
    """Writes a weightless checkpoint (kind vocoder_griffin_lim) that `load_vocoder` turns into a GriffinLimVocoder."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    return save_checkpoint(path, {}, kind=GRIFFIN_LIM_KIND, config=config_to_json(cfg or GriffinLimConfig()),
                           provenance=provenance)


def build_vocoder(cfg: VocoderConfig | str) -> Vocoder:
    return Vocoder(PRESETS[cfg] if isinstance(cfg, str) else cfg)


def save_vocoder(path, vocoder: Vocoder, *, provenance: dict | None = None):
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    return save_checkpoint(path, {k: v.detach() for k, v in vocoder.state_dict().items()}, kind=CKPT_KIND,
                           config=config_to_json(vocoder.cfg), provenance=provenance)


def load_vocoder(path, device: str | torch.device = "cpu") -> Vocoder:
    """Loads a foleyflow vocoder checkpoint (kind 'vocoder', or 'vocoder_griffin_lim': a GriffinLimVocoder); other kinds
    or shapes fail with a CheckpointError."""
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict
    from foleyflow.errors import ConfigError

    from foleyflow.checkpoint import read_metadata

    if read_metadata(path).get("foleyflow.kind") == GRIFFIN_LIM_KIND:
        _, meta = load_checkpoint(path, kind=GRIFFIN_LIM_KIND)
        try:
            return GriffinLimVocoder(from_dict(GriffinLimConfig, checkpoint_config(meta))).to(device).eval()
        except (ConfigError, ValueError) as e:
            raise CheckpointError(f"{path}: its Griffin-Lim config is not valid ({e})") from None
    tensors, meta = load_checkpoint(path, kind=CKPT_KIND)
    try:
        from foleyflow.checkpoint import build_checked

        cfg = from_dict(VocoderConfig, checkpoint_config(meta))
        vocoder = build_checked(lambda: Vocoder(cfg), tensors, what=f"vocoder ({path})")  # config vs shapes first
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{path}: its vocoder config is not valid ({e})") from None
    load_into(vocoder, tensors, what=f"vocoder ({path})")
    return vocoder.to(device).eval()
