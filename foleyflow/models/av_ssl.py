"""Audio-visual models that train the visual encoders self-supervised, and later serve as evaluation models.

  - SemanticAVModel: SemanticEncoder (frames at 8 fps) + AudioEncoder, trained with a symmetric InfoNCE loss between
    pooled visual and audio embeddings of the same clip (or of the same time segment), as in CLIP / AudioCLIP-style
    audio-visual contrastive learning. As an evaluation model it gives an ImageBind-style AV similarity.
  - SyncAVModel: SyncEncoder (frames at 25 fps, Synchformer layout) + AudioEncoder + a transformer that classifies the
    offset of the audio relative to the video among K offsets (Synchformer / av-benchmark: 21 classes from -2 to +2 s
    in 0.2 s steps over 4.8 s windows). As an evaluation model it is a DeSync estimator.
    Departure from Synchformer: one-stage training of the whole model from scratch (Synchformer pre-trains its
    feature extractors with segment-level contrastive learning first) and time-aligned sinusoidal positions in
    seconds for both modalities instead of learned positions.
The AudioEncoder (log-mel -> CNN -> tokens at `token_rate` per second) exists only for this training.

Checkpoints: kind "semantic_av" / "sync_av" with the full config embedded; `load_semantic_encoder(path)` and
`load_sync_encoder(path)` return only the visual encoder (what the generator needs) and refuse other kinds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import mel_filterbank
from foleyflow.models.visual import (SemanticEncoder, SemanticEncoderConfig, SyncEncoder, SyncEncoderConfig,
                                     ResBlock, sync_token_times)

SEMANTIC_KIND, SYNC_KIND = "semantic_av", "sync_av"


# ---------------------------------------------------------------- audio branch
@dataclass
class AudioEncoderConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160  # 100 mel frames per second at 16 kHz
    n_mels: int = 64
    f_max: float = 8000.0
    channels: tuple[int, ...] = (32, 64, 128, 256)  # one stage each; every stage halves the mel axis
    time_downsample: int = 4  # product of time strides (a power of 2, <= 2 ** len(channels)): 25 tokens/s
    embed_dim: int = 256

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        k = int(math.log2(self.time_downsample)) if self.time_downsample > 0 else -1
        if k < 0 or 2 ** k != self.time_downsample or k > len(self.channels):
            raise ConfigError("audio encoder time_downsample must be a power of 2 <= 2 ** len(channels)")

    @property
    def token_rate(self) -> float:
        """Output tokens per second."""
        return self.sample_rate / self.hop_length / self.time_downsample


class AudioEncoder(nn.Module):
    """Waveform (B, num_samples) or (B, C, num_samples) at `sample_rate` (channels averaged to mono)
    -> (B, num_samples // hop_length // time_downsample + ..., embed_dim) tokens at `token_rate` per second.

    Log-mel (Hann STFT, center=True, log(clamp(mel, 1e-5))), then a 2-D CNN over (mel, time) with GroupNorm,
    mean over the mel axis and a linear projection. Not L2-normalised (callers pool, then normalise)."""

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        self.cfg = cfg
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, 0.0, cfg.f_max)  # librosa's (slaney) filters
        self.register_buffer("mel_fb", torch.from_numpy(np.array(fb)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        time_strides = int(math.log2(cfg.time_downsample))
        c0 = cfg.channels[0]
        layers: list[nn.Module] = [nn.Conv2d(1, c0, 3, padding=1)]
        prev = c0
        for i, c in enumerate(cfg.channels):
            st = 2 if i < time_strides else 1
            layers += [nn.Conv2d(prev, c, 3, stride=(2, st), padding=1), ResBlock(c)]
            prev = c
        self.trunk = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(8, prev)
        self.proj = nn.Linear(prev, cfg.embed_dim)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, [C,] num_samples) -> (B, n_mels, num_samples // hop_length + 1) natural-log mel."""
        from foleyflow.audio import mono_log_mel

        return mono_log_mel(audio, self.mel_fb, self.window, self.cfg.n_fft, self.cfg.hop_length)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.log_mel(audio)
        x = (x + 5.0) / 5.0  # rough centring of log-mel values (about -11.5 .. 5)
        h = F.gelu(self.norm(self.trunk(x[:, None].to(self.proj.weight.dtype))))  # (B, C, mel', T')
        return self.proj(h.mean(2).transpose(1, 2))


# ---------------------------------------------------------------- semantic (contrastive) model
@dataclass
class SemanticAVConfig:
    visual: SemanticEncoderConfig = field(default_factory=SemanticEncoderConfig)
    audio: AudioEncoderConfig = field(default_factory=lambda: AudioEncoderConfig(embed_dim=256))
    segments: int = 1  # contrast clip-level (1) or segment-level (>1) pooled embeddings
    init_temperature: float = 0.07


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE between rows of a and b (N, D), both L2-normalised; row i of a matches row i of b."""
    logits = logit_scale.exp().clamp(max=100.0) * a @ b.t()
    target = torch.arange(a.shape[0], device=a.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    acc = (logits.argmax(1) == target).float().mean()
    return {"contrastive/infonce": loss, "contrastive/acc": acc.detach()}


def pool_segments(x: torch.Tensor, segments: int) -> torch.Tensor:
    """(B, T, D) -> (B, segments, D) L2-normalised means over equal time spans."""
    return F.normalize(F.adaptive_avg_pool1d(x.transpose(1, 2), segments).transpose(1, 2), dim=-1)


class SemanticAVModel(nn.Module):
    def __init__(self, cfg: SemanticAVConfig):
        super().__init__()
        self.cfg = cfg
        self.visual = SemanticEncoder(cfg.visual)
        self.audio = AudioEncoder(cfg.audio)
        self.audio_head = nn.Linear(cfg.audio.embed_dim, cfg.visual.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def embed(self, frames: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T8, 3, H, W), audio (B, [C,] num_samples) -> (B, segments, D) visual and audio embeddings."""
        v = pool_segments(self.visual(frames), self.cfg.segments)
        a = pool_segments(self.audio_head(self.audio(audio)), self.cfg.segments)
        return v, a

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        v, a = self.embed(frames, audio)
        return info_nce(v.flatten(0, 1), a.flatten(0, 1), self.logit_scale)

    def similarity(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B,) cosine between clip-level visual and audio embeddings (an AV-similarity score)."""
        v = pool_segments(self.visual(frames), 1)[:, 0]
        a = pool_segments(self.audio_head(self.audio(audio)), 1)[:, 0]
        return (v * a).sum(-1)


# ---------------------------------------------------------------- sync (offset classification) model
def default_offsets() -> tuple[float, ...]:
    return tuple(round(-2.0 + 0.2 * i, 1) for i in range(21))


@dataclass
class SyncAVConfig:
    visual: SyncEncoderConfig = field(default_factory=SyncEncoderConfig)
    audio: AudioEncoderConfig = field(default_factory=lambda: AudioEncoderConfig(embed_dim=192))
    offsets_s: tuple[float, ...] = field(default_factory=default_offsets)  # class k = audio shifted by offsets_s[k]
    window_s: float = 4.8  # video window and audio window length
    head_width: int = 192
    head_depth: int = 3
    head_heads: int = 4
    segment_embed_dim: int = 0  # > 0 adds Synchformer's stage-I objective: segment-level AV contrastive embeddings
    event_head: bool = False  # a per-token head [contact logit, pan] trained on ground-truth contacts (FoleyWorld)


def time_embedding(times_s: torch.Tensor, dim: int, max_period_s: float = 100.0,
                   min_period_s: float = 0.02) -> torch.Tensor:
    """(..., ) times in seconds -> (..., dim) sinusoids with periods from min_period_s to max_period_s."""
    half = dim // 2
    periods = torch.exp(torch.linspace(math.log(min_period_s), math.log(max_period_s), half, device=times_s.device))
    ang = 2 * math.pi * times_s[..., None].float() / periods
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class SyncAVModel(nn.Module):
    """Visual tokens of a video window and audio tokens of an audio window -> logits over the K offsets."""

    def __init__(self, cfg: SyncAVConfig):
        super().__init__()
        self.cfg = cfg
        self.visual = SyncEncoder(cfg.visual)
        self.audio = AudioEncoder(cfg.audio)
        w = cfg.head_width
        self.v_in = nn.Linear(cfg.visual.out_dim, w)
        self.a_in = nn.Linear(cfg.audio.embed_dim, w)
        self.modality = nn.Parameter(torch.randn(2, w) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, cfg.head_heads, 4 * w, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.head = nn.TransformerEncoder(layer, cfg.head_depth, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, len(cfg.offsets_s)))
        if cfg.segment_embed_dim > 0:
            self.seg_v = nn.Linear(cfg.visual.out_dim, cfg.segment_embed_dim)
            self.seg_a = nn.Linear(cfg.audio.embed_dim, cfg.segment_embed_dim)
            self.seg_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if cfg.event_head:
            self.event_out = nn.Sequential(nn.LayerNorm(cfg.visual.out_dim), nn.Linear(cfg.visual.out_dim, 2))

    @property
    def num_classes(self) -> int:
        return len(self.cfg.offsets_s)

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """frames (B, T25, 3, H, W) at 25 fps, audio (B, [C,] num_samples) -> (B, K) logits."""
        return self.classify(self.visual(frames), self.audio(audio))

    def classify(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B, S*8, Dv) and audio tokens (B, Ta, Da) of the two windows -> (B, K) offset logits."""
        vs = self.cfg.visual
        v_t = sync_token_times(v.shape[1] // vs.tokens_per_segment, vs.fps, vs.segment_frames, vs.segment_stride,
                               vs.tubelet).to(v.device)
        a_t = (torch.arange(a.shape[1], device=a.device) + 0.5) / self.cfg.audio.token_rate
        w = self.cfg.head_width
        v = self.v_in(v) + time_embedding(v_t, w).to(v.dtype) + self.modality[0]
        a = self.a_in(a) + time_embedding(a_t, w).to(a.dtype) + self.modality[1]
        x = torch.cat([self.cls.expand(v.shape[0], -1, -1), v, a], dim=1)
        return self.out(self.head(x)[:, 0])

    def segment_embeddings(self, v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, S*8, Dv) visual tokens, a (B, Ta, Da) audio tokens of the same window -> (B, S, E) visual and
        (B, S, E) audio embeddings per segment, L2-normalised: the mean of the segment's 8 visual tokens, and the
        mean of the audio tokens whose centre lies inside the segment's 16 frames."""
        vs = self.cfg.visual
        b, s = v.shape[0], v.shape[1] // vs.tokens_per_segment
        v_seg = self.seg_v(v.reshape(b, s, vs.tokens_per_segment, -1).mean(2))
        a_t = (torch.arange(a.shape[1], device=a.device) + 0.5) / self.cfg.audio.token_rate
        start = torch.arange(s, device=a.device)[:, None] * vs.segment_stride / vs.fps
        inside = ((a_t[None] >= start) & (a_t[None] < start + vs.segment_frames / vs.fps)).to(a.dtype)  # (S, Ta)
        a_seg = self.seg_a(inside @ a / inside.sum(1, keepdim=True).clamp(min=1))  # (B, S, E)
        return F.normalize(v_seg, dim=-1), F.normalize(a_seg, dim=-1)

    def segment_contrastive(self, v: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
        """Synchformer's stage-I objective on aligned windows: InfoNCE between `segment_embeddings` of every
        segment of the batch, the other segments of the same clip included (temporal hard negatives)."""
        v_seg, a_seg = self.segment_embeddings(v, a)
        out = info_nce(v_seg.flatten(0, 1), a_seg.flatten(0, 1), self.seg_logit_scale)
        return {"sync/segment_infonce": out["contrastive/infonce"], "sync/segment_acc": out["contrastive/acc"]}

    def contacts(self, v: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B, N, Dv) -> (B, N, 2): [logit that a visible contact starts in the token, its pan]."""
        if not self.cfg.event_head:
            raise ValueError("this sync model has no event head (model.event_head: false)")
        return self.event_out(v)

    def predict_offset_s(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B,) most likely offset in seconds of the audio relative to the video."""
        grid = torch.tensor(self.cfg.offsets_s, device=frames.device)
        return grid[self.forward(frames, audio).argmax(-1)]

    def first_last_offsets_s(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2) predicted offsets of the first and the last window_s seconds of whole clips (av-benchmark's DeSync
        protocol: DeSync = mean absolute value). frames (B, T, 3, H, W) at 25 fps, audio (B, [C,] N) at the
        encoder's sample rate; both must cover at least window_s seconds."""
        fps, sr, w = self.cfg.visual.fps, self.cfg.audio.sample_rate, self.cfg.window_s
        nf, na = int(round(w * fps)), int(round(w * sr))
        t_frames, t_audio = frames.shape[1], audio.shape[-1]
        if t_frames < nf or t_audio < na:
            raise ValueError(f"clips must be at least {w} s long for offset prediction")
        duration = min(t_frames / fps, t_audio / sr)
        last_f = int((duration - w) * fps + 1e-6)
        last_a = int(round(last_f / fps * sr))
        first = self.predict_offset_s(frames[:, :nf], audio[..., :na])
        last = self.predict_offset_s(frames[:, last_f:last_f + nf], audio[..., last_a:last_a + na])
        return torch.stack([first, last], dim=1)


def contact_targets(onsets: torch.Tensor, start_s: float, num_segments: int, cfg: SyncEncoderConfig
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token targets of a video window starting at start_s: (N,) 1.0 where a contact becomes visible in the
    token's frames (the first frame at or after the onset), and (N,) the mean pan of those contacts (0 elsewhere).
    onsets (E, 2) [time_s, pan]; N = num_segments * tokens_per_segment, tokens ordered as the encoder's."""
    tps = cfg.tokens_per_segment
    first = (torch.arange(num_segments)[:, None] * cfg.segment_stride
             + torch.arange(tps)[None, :] * cfg.tubelet).reshape(-1)  # first frame of each token
    if onsets.numel() == 0:
        return torch.zeros(first.numel()), torch.zeros(first.numel())
    frame = torch.ceil((onsets[:, 0].double() - start_s) * cfg.fps - 1e-6).long()  # (E,)
    hit = ((frame[None] >= first[:, None]) & (frame[None] < first[:, None] + cfg.tubelet)).float()  # (N, E)
    count = hit.sum(1)
    pan = (hit @ onsets[:, 1].float()) / count.clamp(min=1)
    return (count > 0).float(), pan


# ---------------------------------------------------------------- checkpoints
def save_av_model(path: str | Path, model: SemanticAVModel | SyncAVModel, provenance: dict | None = None) -> Path:
    """Writes a self-describing checkpoint of kind semantic_av / sync_av (weights + embedded config)."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    kind = SEMANTIC_KIND if isinstance(model, SemanticAVModel) else SYNC_KIND
    return save_checkpoint(path, model.state_dict(), kind=kind, config=config_to_json(model.cfg),
                           provenance=provenance)


def _load(path, kind, cfg_cls, model_cls, visual_only_ok: bool = False):
    from foleyflow.checkpoint import PART, checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict
    from foleyflow.hashing import file_sha256

    from foleyflow.checkpoint import build_checked
    from foleyflow.errors import CheckpointError, ConfigError

    tensors, meta = load_checkpoint(path, kind=kind)
    try:
        cfg = from_dict(cfg_cls, checkpoint_config(meta))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its {kind} config is not valid ({e})") from None
    visual = meta.get(PART) == "visual"
    model = build_checked(lambda: model_cls(cfg), {k[len("visual."):]: v for k, v in tensors.items()} if visual
                          else tensors, what=f"{kind} ({path})", select=(lambda m: m.visual) if visual else None)
    if meta.get(PART) == "visual":      # a storage copy of the visual tower only (checkpoint.save_fp16_copy)
        if not visual_only_ok:
            from foleyflow.errors import CheckpointError
            raise CheckpointError(f"{path} holds only the visual encoder of a {kind} model, not the whole model")
        load_into(model.visual, {k[len("visual."):]: v for k, v in tensors.items()}, what=f"{kind} visual encoder")
    else:
        load_into(model, tensors, what=kind)
    model.identity = {"kind": kind, "impl": "foleyflow", "weights": str(Path(path).resolve()),
                      "sha256": file_sha256(path)}
    return model.eval()


def load_semantic_model(path: str | Path) -> SemanticAVModel:
    return _load(path, SEMANTIC_KIND, SemanticAVConfig, SemanticAVModel)


def load_sync_model(path: str | Path) -> SyncAVModel:
    return _load(path, SYNC_KIND, SyncAVConfig, SyncAVModel)


def _visual(model, kind: str):
    enc = model.visual
    enc.identity = {**model.identity, "kind": kind, "dim": enc.out_dim, "fps": enc.fps}
    return enc


def load_semantic_encoder(path: str | Path) -> SemanticEncoder:
    """The visual (8 fps) encoder of a semantic_av checkpoint, in eval mode. Its `identity` (kind, weights path,
    sha256, dim, fps) is what a feature cache records."""
    return _visual(_load(path, SEMANTIC_KIND, SemanticAVConfig, SemanticAVModel, visual_only_ok=True), "semantic")


def load_sync_encoder(path: str | Path) -> SyncEncoder:
    """The visual (25 fps) sync encoder of a sync_av checkpoint, in eval mode, with its `identity`."""
    return _visual(_load(path, SYNC_KIND, SyncAVConfig, SyncAVModel, visual_only_ok=True), "sync")
