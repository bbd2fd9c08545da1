"""Audio evaluation models: a small log-mel CNN as event classifier / clip tagger / embedder, and a CLAP-style
text-audio model. Trained on FoleyWorld's `evaltrain` split only; never shares weights with the generator's encoders.

EvalCNN follows the PANNs CNN family (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks"):
log-mel input normalised per mel bin by BatchNorm, blocks of 3x3 conv + BatchNorm + ReLU each followed by 2-D
average pooling, mean over the mel axis. Departures: far narrower (16..128 channels, 0.19 M weights) and pools
time only in the first blocks, so it keeps a token rate (25 per second by default) for onset-aligned segments.

EventModel (one network, three uses):
  - event head: a segment of `segment_s` starting `pre_s` before a labelled onset -> logits over the 18 timed classes
    (discrete and continuous, not ambience). The head is a linear map of the flattened (time, channel) tokens, so it
    knows where in the segment the onset is (an earlier event still ringing in the segment is not the answer).
  - clip head: frame-wise class logits (all 21 classes) pooled by decision-level attention (PANNs' "att" head) into
    clip-level presence probabilities (multi-label, sigmoid).
  - embedding: mean and max over time of the tokens, concatenated (2 x channels), for FD and KAD.
ClapModel: an EvalCNN (own weights) + MLP projection of the pooled audio tokens, and an MLP projection of the frozen
MiniLM sentence vector (foleyflow.models.text_encoder, 384-d), both L2-normalised; trained with symmetric InfoNCE as
CLAP (Elizalde et al. 2023) does. Departure: the text tower is frozen and only its projection is trained.

Checkpoints: kinds "eval_event" and "eval_clap" with the config embedded (see foleyflow.checkpoint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import mel_filterbank
from foleyflow.events import AMBIENCE_CLASSES, SOUND_CLASSES
from foleyflow.models.text_encoder import TEXT_DIM

EVENT_KIND, CLAP_KIND = "eval_event", "eval_clap"
LOG_FLOOR = math.log(1e-5)   # log-mel of silence (the clamp in log_mel)


@dataclass
class EvalCNNConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160            # 100 mel frames per second at 16 kHz
    n_mels: int = 64
    f_max: float = 8000.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    convs: tuple[int, ...] = (1, 2, 2, 1)        # 3x3 convs per block
    time_pool: tuple[int, ...] = (2, 2, 1, 1)    # time pooling after each block (mel is always halved)

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        if not len(self.channels) == len(self.convs) == len(self.time_pool):
            raise ConfigError("eval CNN channels, convs and time_pool need one entry per block")
        if self.n_mels % 2 ** len(self.channels):
            raise ConfigError(f"eval CNN n_mels must be divisible by {2 ** len(self.channels)}")

    @property
    def token_rate(self) -> float:
        return self.sample_rate / self.hop_length / math.prod(self.time_pool)


class EvalCNN(nn.Module):
    """(B, [C,] num_samples) waveform -> (B, T, channels[-1]) tokens; or `tokens(log_mel)` from (B, n_mels, frames)."""

    def __init__(self, cfg: EvalCNNConfig):
        super().__init__()
        self.cfg = cfg
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, 0.0, cfg.f_max)  # librosa's (slaney) filters
        self.register_buffer("mel_fb", torch.from_numpy(np.array(fb)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.bn0 = nn.BatchNorm1d(cfg.n_mels)
        blocks, prev = [], 1
        for c, n in zip(cfg.channels, cfg.convs):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                prev = c
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    @property
    def dim(self) -> int:
        return self.cfg.channels[-1]

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, [C,] num_samples) -> (B, n_mels, num_samples // hop_length + 1) natural-log mel of the mono mix."""
        from foleyflow.audio import mono_log_mel

        return mono_log_mel(audio, self.mel_fb, self.window, self.cfg.n_fft, self.cfg.hop_length)

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.bn0(mel)[:, None]                                   # (B, 1, mels, frames)
        for block, tp in zip(self.blocks, self.cfg.time_pool):
            x = F.avg_pool2d(block(x), (2, tp))
        return x.mean(2).transpose(1, 2)                             # (B, T, C)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.tokens(self.log_mel(audio))


def timed_classes() -> tuple[str, ...]:
    return tuple(c for c in SOUND_CLASSES if c not in AMBIENCE_CLASSES)


@dataclass
class EventModelConfig:
    cnn: EvalCNNConfig = field(default_factory=EvalCNNConfig)
    event_classes: tuple[str, ...] = field(default_factory=timed_classes)   # event head (segments at onsets)
    clip_classes: tuple[str, ...] = SOUND_CLASSES                           # clip head (multi-label)
    segment_s: float = 0.64
    pre_s: float = 0.08
    dropout: float = 0.2

    def segment_samples(self) -> int:
        return int(round(self.segment_s * self.cnn.sample_rate))


class EventModel(nn.Module):
    def __init__(self, cfg: EventModelConfig):
        super().__init__()
        self.cfg = cfg
        self.cnn = EvalCNN(cfg.cnn)
        d = self.cnn.dim
        with torch.no_grad():
            self.segment_tokens = self.cnn.eval()(torch.zeros(1, cfg.segment_samples())).shape[1]
        self.cnn.train()
        self.drop = nn.Dropout(cfg.dropout)
        self.event_head = nn.Linear(self.segment_tokens * d, len(cfg.event_classes))
        self.frame_head = nn.Linear(d, len(cfg.clip_classes))
        self.att_head = nn.Linear(d, len(cfg.clip_classes))

    def event_logits_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, segment frames) -> (B, event classes)."""
        h = self.cnn.tokens(mel)
        if h.shape[1] != self.segment_tokens:
            raise ValueError(f"event segments must give {self.segment_tokens} tokens, got {h.shape[1]}")
        return self.event_head(self.drop(h.flatten(1)))

    def event_logits(self, segment: torch.Tensor) -> torch.Tensor:
        return self.event_logits_from_mel(self.cnn.log_mel(segment))

    def clip_from_tokens(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T, D) -> (clip presence probabilities (B, clip classes), embedding (B, 2D))."""
        hd = self.drop(h)
        att = torch.softmax(self.att_head(hd).clamp(-10, 10), dim=1)
        prob = (att * torch.sigmoid(self.frame_head(hd))).sum(1)
        return prob.clamp(1e-7, 1 - 1e-7), torch.cat([h.mean(1), h.amax(1)], dim=-1)

    def clip_outputs(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clip_from_tokens(self.cnn(audio))


@dataclass
class ClapModelConfig:
    cnn: EvalCNNConfig = field(default_factory=lambda: EvalCNNConfig(hop_length=320, time_pool=(2, 1, 1, 1)))
    text_dim: int = TEXT_DIM     # MiniLM-L6 sentence vector
    text_encoder: str = "minilm"  # how captions become vectors (eval.models.caption_vectors; "hashed" for tests)
    embed_dim: int = 256
    init_temperature: float = 0.07


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class ClapModel(nn.Module):
    def __init__(self, cfg: ClapModelConfig):
        super().__init__()
        self.cfg = cfg
        self.cnn = EvalCNN(cfg.cnn)
        self.audio_proj = _mlp(2 * self.cnn.dim, cfg.embed_dim)
        self.text_proj = _mlp(cfg.text_dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def audio_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.cnn.tokens(mel)
        return F.normalize(self.audio_proj(torch.cat([h.mean(1), h.amax(1)], dim=-1)), dim=-1)

    def audio_embedding(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, [C,] num_samples) -> (B, embed_dim) L2-normalised."""
        return self.audio_from_mel(self.cnn.log_mel(audio))

    def text_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 384) MiniLM sentence vectors -> (B, embed_dim) L2-normalised."""
        return F.normalize(self.text_proj(pooled), dim=-1)


def build_model(kind: str, config: dict) -> nn.Module:
    """Rebuilds an EventModel / ClapModel from the model config dict stored in its checkpoint."""
    from foleyflow.config import from_dict

    if kind == EVENT_KIND:
        return EventModel(from_dict(EventModelConfig, config))
    if kind == CLAP_KIND:
        return ClapModel(from_dict(ClapModelConfig, config))
    raise ValueError(f"unknown evaluation model kind {kind!r}")
