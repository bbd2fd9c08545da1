"""Mel-spectrogram VAE: MMAudio's 1-D convolutional autoencoder with magnitude-preserving layers.

Implements the architecture of MMAudio's codec VAE (hkchengrex/MMAudio, `mmaudio/ext/autoencoder/`), which builds on
the magnitude-preserving layers of EDM2 (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models"): weight-normalised convolutions (every output filter has unit norm), pixel norm before each
residual block, SiLU / 0.596, residual sums `lerp(x, h, 0.3) / sqrt(0.7^2 + 0.3^2)`, a single x2 time downsample
(1x1 conv, average pool, 1x1 conv) and x2 nearest upsample, one cosine-attention block in the middle, activations
clamped to +-256, and a learned output gain. The encoder maps a normalised log-mel (N, n_mels, T) to a diagonal
Gaussian over (N, latent_dim, T // 2); the decoder maps latents back to (N, n_mels, 2 * T_latent).

Where we depart from the reference:
- `MPConv1d` always normalises its stored weight inside `forward` (EDM2's training-time forward, with EDM2's forced
  re-normalisation of the stored weight in training mode), so one weight format serves training and inference and
  there is no `remove_weight_norm()` step. MMAudio checkpoints store exactly this raw weight; `convert_mmaudio_vae`
  only renames keys.
- The per-bin input statistics are buffers filled from data (our recipe measures them on FoleyWorld), not constants.
- Stereo is handled outside the network, **per channel**: `encode_stereo` folds channels into the batch, so left and
  right are encoded by the same mono VAE and their latents are concatenated (C * latent_dim channels, L first).
  Why not mid/side: the vocoder rebuilds each channel's phase on its own, so only per-channel magnitudes survive the
  codec; decoding M and S separately and summing them with unrelated phases would corrupt the channel levels (ILD)
  the spatial metrics measure, and the often near-silent side channel sits at the log floor where the VAE is
  least accurate. Per channel also keeps released mono MMAudio weights usable unchanged (the 44 kHz model's 40
  channels are mono; ours are 2 x 20 at 16 kHz).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.errors import CheckpointError

CKPT_KIND = "vae"


@dataclass
class VAEConfig:
    mel_setting: str = "16k"  # foleyflow.audio.MEL_SETTINGS key; fixes n_mels and the hop
    n_mels: int = 80
    latent_dim: int = 20
    hidden_dim: int = 32  # MMAudio: 384 (16k), 512 (44k)
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    kernel_size: int = 3
    clip_act: float = 256.0


PRESETS = {
    "mmaudio_16k": VAEConfig("16k", 80, 20, 384),
    "mmaudio_44k": VAEConfig("44k", 128, 40, 512),
    "tiny_16k": VAEConfig("16k", 80, 20, 32),
    "small_16k": VAEConfig("16k", 80, 20, 64),
}
TIME_DOWNSAMPLE = 2  # mel frames per latent frame


def mp_normalize(x: torch.Tensor, dim=None, eps: float = 1e-4) -> torch.Tensor:
    """x / (eps + ||x|| / sqrt(n)) over `dim` (default all but the first): unit RMS (EDM2 eq. 66's normalise)."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = eps + norm * math.sqrt(norm.numel() / x.numel())
    return x / norm.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.3) -> torch.Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


class MPConv1d(nn.Module):
    """Magnitude-preserving 1-D convolution ('same' padding) with forced weight normalisation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size))

    def effective_weight(self) -> torch.Tensor:
        w = self.weight.float()
        if self.training:
            with torch.no_grad():
                self.weight.copy_(mp_normalize(w))
        return mp_normalize(w) / math.sqrt(w[0].numel())

    def forward(self, x: torch.Tensor, gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        w = (self.effective_weight() * gain).to(x.dtype)
        return F.conv1d(x, w, padding=w.shape[-1] // 2)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__()
        self.conv1 = MPConv1d(in_ch, out_ch, kernel_size)
        self.conv2 = MPConv1d(out_ch, out_ch, kernel_size)
        self.skip = MPConv1d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = mp_normalize(x, dim=1)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        if self.skip is not None:
            x = self.skip(x)
        return mp_sum(x, h, 0.3)


class Attention(nn.Module):
    """Single-head self-attention over time with unit-norm (cosine) q, k, v, as a residual mp_sum."""

    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.qkv = MPConv1d(ch, 3 * ch, 1)
        self.proj = MPConv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        y = self.qkv(x).reshape(b, self.heads, -1, 3, t)  # channel layout (head, dim, q/k/v)
        q, k, v = mp_normalize(y, dim=2).unbind(3)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(b, -1, t)
        return mp_sum(x, self.proj(h), 0.3)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.pre, self.post = MPConv1d(ch, ch, 1), MPConv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(F.avg_pool1d(self.pre(x), kernel_size=2, stride=2))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = MPConv1d(ch, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))


class Level(nn.Module):
    """Residual blocks at one width, optionally followed by a resampler."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, k: int, resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(in_ch if i == 0 else out_ch, out_ch, k) for i in range(n_blocks)])
        self.resample = resample


class Middle(nn.Module):
    def __init__(self, ch: int, k: int):
        super().__init__()
        self.block1, self.attn, self.block2 = ResBlock(ch, ch, k), Attention(ch), ResBlock(ch, ch, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.attn(self.block1(x)))


class MelEncoder(nn.Module):
    """(N, n_mels, T) normalised log-mel -> (N, 2 * latent_dim, T // 2) posterior moments (mean, log-variance)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d, k, self.clip = cfg.hidden_dim, cfg.kernel_size, cfg.clip_act
        widths = [d * m for m in cfg.ch_mult]
        self.conv_in = MPConv1d(cfg.n_mels, d, k)
        ins = [d] + widths[:-1]
        self.levels = nn.ModuleList([Level(ins[i], widths[i], cfg.num_res_blocks, k,
                                           Downsample(widths[i]) if i == 0 else None) for i in range(len(widths))])
        self.mid = Middle(widths[-1], k)
        self.conv_out = MPConv1d(widths[-1], 2 * cfg.latent_dim, k)
        self.gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            for block in level.blocks:
                h = block(h).clamp(-self.clip, self.clip)
            if level.resample is not None:
                h = level.resample(h)
        h = self.mid(h).clamp(-self.clip, self.clip)
        return self.conv_out(mp_silu(h), gain=self.gain + 1)


class MelDecoder(nn.Module):
    """(N, latent_dim, T') latents -> (N, n_mels, 2 * T') normalised log-mel."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d, k, self.clip = cfg.hidden_dim, cfg.kernel_size, cfg.clip_act
        widths = [d * m for m in cfg.ch_mult][::-1]  # execution order: widest first
        self.conv_in = MPConv1d(cfg.latent_dim, widths[0], k)
        self.mid = Middle(widths[0], k)
        ins = [widths[0]] + widths[:-1]
        n = len(widths)
        self.levels = nn.ModuleList([Level(ins[i], widths[i], cfg.num_res_blocks + 1, k,
                                           Upsample(widths[i]) if i == n - 2 else None) for i in range(n)])
        self.conv_out = MPConv1d(widths[-1], cfg.n_mels, k)
        self.gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z)).clamp(-self.clip, self.clip)
        for level in self.levels:
            for block in level.blocks:
                h = block(h).clamp(-self.clip, self.clip)
            if level.resample is not None:
                h = level.resample(h)
        return self.conv_out(mp_silu(h), gain=self.gain + 1)


@dataclass
class DiagonalGaussian:
    """A diagonal Gaussian posterior; tensors (N, C, T)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.empty_like(self.mean).normal_(generator=generator)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), elementwise (same shape as `mean`)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)


class MelVAE(nn.Module):
    """Mono mel VAE. `encode` normalises the log-mel per bin with the stored statistics; `decode` undoes it."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        if len(cfg.ch_mult) < 2:
            raise ValueError("ch_mult needs at least two levels (the x2 resampling sits between the first two)")
        self.cfg = cfg
        self.register_buffer("data_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("data_std", torch.ones(cfg.n_mels))
        self.encoder = MelEncoder(cfg)
        self.decoder = MelDecoder(cfg)

    def encode(self, mel: torch.Tensor) -> DiagonalGaussian:
        """(N, n_mels, T) log-mel -> posterior over (N, latent_dim, T // 2)."""
        x = (mel - self.data_mean[:, None]) / self.data_std[:, None]
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim, T') -> (N, n_mels, 2 * T') log-mel."""
        return self.decoder(z) * self.data_std[:, None] + self.data_mean[:, None]

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None,
                sample: bool = True) -> tuple[torch.Tensor, DiagonalGaussian]:
        post = self.encode(mel)
        z = post.sample(generator) if sample else post.mean
        return self.decode(z), post


# ----- multi-channel (stereo) helpers: channels are encoded independently and concatenated -----

def encode_channels(vae: MelVAE, mel: torch.Tensor) -> DiagonalGaussian:
    """(B, C, n_mels, T) -> posterior over (B, C * latent_dim, T // 2), channel c at [c * latent_dim, ...)."""
    b, c, m, t = mel.shape
    post = vae.encode(mel.reshape(b * c, m, t))
    fold = lambda x: x.reshape(b, c * x.shape[1], x.shape[2])  # noqa: E731
    return DiagonalGaussian(fold(post.mean), fold(post.logvar))


def decode_channels(vae: MelVAE, z: torch.Tensor) -> torch.Tensor:
    """(B, C * latent_dim, T') -> (B, C, n_mels, 2 * T')."""
    b, cz, t = z.shape
    c = cz // vae.cfg.latent_dim
    if c * vae.cfg.latent_dim != cz:
        raise ValueError(f"latent has {cz} channels, not a multiple of latent_dim {vae.cfg.latent_dim}")
    mel = vae.decode(z.reshape(b * c, vae.cfg.latent_dim, t))
    return mel.reshape(b, c, mel.shape[1], mel.shape[2])


def samples_per_latent(cfg: VAEConfig) -> int:
    from foleyflow.audio import MEL_SETTINGS

    return MEL_SETTINGS[cfg.mel_setting].hop_length * getattr(cfg, "time_downsample", TIME_DOWNSAMPLE)


def num_latent_frames(num_samples: int, cfg: VAEConfig) -> int:
    """Latent frames for a clip of `num_samples`: ceil(num_samples / samples_per_latent) (MMAudio's convention);
    the audio is zero-padded to `num_latent_frames * samples_per_latent` before the mel front-end."""
    return -(-int(num_samples) // samples_per_latent(cfg))


# ----- checkpoints -----

_MMAUDIO_RENAMES = [  # (reference key pattern, our key), applied in order
    (r"^data_(mean|std)$", r"data_\1"),
    (r"^(encoder|decoder)\.learnable_gain$", r"\1.gain"),
    (r"^encoder\.down\.(\d+)\.block\.", r"encoder.levels.\1.blocks."),
    (r"^encoder\.down\.(\d+)\.downsample\.conv1\.", r"encoder.levels.\1.resample.pre."),
    (r"^encoder\.down\.(\d+)\.downsample\.conv2\.", r"encoder.levels.\1.resample.post."),
    (r"^decoder\.up\.(\d+)\.block\.", r"decoder.up.\1.blocks."),
    (r"^decoder\.up\.(\d+)\.upsample\.", r"decoder.up.\1.resample."),
    (r"\.mid\.block_(\d)\.", r".mid.block\1."),
    (r"\.mid\.attn_1\.proj_out\.", r".mid.attn.proj."),
    (r"\.mid\.attn_1\.", r".mid.attn."),
    (r"\.nin_shortcut\.", r".skip."),
]


def convert_mmaudio_vae(state: dict[str, torch.Tensor]) -> tuple[VAEConfig, dict[str, torch.Tensor]]:
    """A state dict of MMAudio's `VAE` (as its checkpoints store it, before `remove_weight_norm()`) -> our config and
    state dict. Only key names change: our `MPConv1d` normalises the raw stored weight itself."""
    state = {k.removeprefix("net."): v for k, v in state.items()}
    if "encoder.conv_in.weight" not in state or "decoder.conv_in.weight" not in state:
        raise CheckpointError("not an MMAudio VAE state dict (no encoder/decoder conv_in weights)")
    hidden, n_mels = state["encoder.conv_in.weight"].shape[:2]
    latent = state["decoder.conv_in.weight"].shape[1]
    n_levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
    widths = [state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(n_levels)]
    n_blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)))
    cfg = VAEConfig("16k" if n_mels == 80 else "44k", int(n_mels), int(latent), int(hidden),
                    tuple(w // hidden for w in widths), n_blocks, int(state["encoder.conv_in.weight"].shape[2]))
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _MMAUDIO_RENAMES:
            new = re.sub(pattern, repl, new)
        m = re.match(r"^decoder\.up\.(\d+)\.(.*)$", new)
        if m:  # the reference indexes decoder levels by resolution; ours run in execution order
            new = f"decoder.levels.{n_levels - 1 - int(m.group(1))}.{m.group(2)}"
        out[new] = value.reshape(-1) if new in ("data_mean", "data_std") else value
    return cfg, out


def vae_to_checkpoint_tensors(vae: MelVAE) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in vae.state_dict().items()}


def build_vae(cfg: VAEConfig | str) -> MelVAE:
    return MelVAE(PRESETS[cfg] if isinstance(cfg, str) else cfg)


def save_vae(path, vae: MelVAE, *, provenance: dict | None = None):
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    return save_checkpoint(path, vae_to_checkpoint_tensors(vae), kind=CKPT_KIND, config=config_to_json(vae.cfg),
                           provenance=provenance)


def load_vae(path, device: str | torch.device = "cpu") -> MelVAE:
    """Loads a foleyflow codec checkpoint: kind 'vae', or 'mel_codec' (a `MelFrameCodec`, foleyflow.models.mel_codec,
    which has the VAE's interface); other kinds or shapes fail with a one-line CheckpointError."""
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, load_into, read_metadata
    from foleyflow.config import from_dict
    from foleyflow.errors import ConfigError
    from foleyflow.models import mel_codec

    if read_metadata(path).get("foleyflow.kind") == mel_codec.CKPT_KIND:
        tensors, meta = load_checkpoint(path, kind=mel_codec.CKPT_KIND)
        try:
            codec = mel_codec.MelFrameCodec(from_dict(mel_codec.MelCodecConfig, checkpoint_config(meta))).eval()
        except (ConfigError, ValueError) as e:
            raise CheckpointError(f"{path}: its mel codec config is not valid ({e})") from None
        load_into(codec, tensors, what=f"mel codec ({path})")   # nothing, or the principal components
        return codec
    tensors, meta = load_checkpoint(path, kind=CKPT_KIND)
    try:
        cfg = from_dict(VAEConfig, checkpoint_config(meta))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its VAE config is not valid ({e})") from None
    from foleyflow.checkpoint import build_checked

    vae = build_checked(lambda: MelVAE(cfg), tensors, what=f"VAE ({path})")  # config vs shapes first
    load_into(vae, tensors, what=f"VAE ({path})")
    return vae.to(device).eval()
