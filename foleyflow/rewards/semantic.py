"""Semantic reward: text-audio agreement from a small CLAP-style contrastive model (CLAP, Elizalde et al. 2023; the
semantic reward of PrismAudio).

Text side: the frozen MiniLM-L6 sentence vector (384-d, `foleyflow.models.text_encoder`) of the prompt, or of the
Semantic part of a chain of thought, through a trained two-layer MLP. Audio side: our own encoder, a strided 1-D
convolution over the 48-band natural-log mel of the mono mix (25 ms window, 12.5 ms hop) followed by two transformer
layers with sinusoidal time positions and attention pooling. Both sides end in L2-normalised `embed_dim` vectors;
score = their cosine (-1..1). Departure from CLAP: a much smaller audio tower trained from scratch on FoleyWorld
`train`, and a multi-positive InfoNCE (clips of a batch with the same text count as positives of each other).
It shares nothing with the evaluation CLAP (`foleyflow/models/eval_audio.py`: a 2-D CNN trained on `evaltrain`).

    model = SemanticRewardModel(SemanticRewardConfig())
    s = model.score(audio, RewardConditions(texts=["Semantic: a glass bottle rolls ..."]))   # (B,) cosine
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import MelSetting, log_mel_spectrogram
from foleyflow.rewards.common import RewardConditions, check_audio, load_reward, save_reward

KIND = "reward_semantic"
TEXT_DIM = 384


@dataclass
class SemanticRewardConfig:
    n_mels: int = 48
    width: int = 128
    depth: int = 2
    heads: int = 4
    embed_dim: int = 128
    text_hidden: int = 256
    init_temperature: float = 0.1

    @property
    def mel(self) -> MelSetting:
        return MelSetting(16_000, 400, 200, 400, self.n_mels, 20.0, 8000.0, "ln")


def sinusoids(n: int, dim: int) -> torch.Tensor:
    """(n, dim) sinusoidal positions."""
    half = dim // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
    ang = torch.arange(n)[:, None] * freq[None]
    return torch.cat([ang.sin(), ang.cos()], 1)


class SemanticRewardModel(nn.Module):
    def __init__(self, cfg: SemanticRewardConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv1d(cfg.n_mels, w, 5, stride=2, padding=2), nn.GELU(),
                                  nn.Conv1d(w, w, 3, stride=2, padding=1), nn.GELU())
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.pool_query = nn.Linear(w, 1)
        self.audio_proj = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, cfg.embed_dim))
        self.text_proj = nn.Sequential(nn.Linear(TEXT_DIM, cfg.text_hidden), nn.GELU(),
                                       nn.Linear(cfg.text_hidden, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))

    def audio_embedding(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2, num_samples) at 16 kHz -> (B, embed_dim) L2-normalised."""
        mel = log_mel_spectrogram(check_audio(audio).mean(1), self.cfg.mel)  # (B, n_mels, T) at 80 fps
        mel = (mel - mel.mean((1, 2), keepdim=True)) / 4.0  # level-invariant, roughly unit scale
        x = self.stem(mel).transpose(1, 2)  # (B, T/4, width)
        x = self.blocks(x + sinusoids(x.shape[1], x.shape[2]).to(x))
        weights = self.pool_query(x).softmax(1)  # (B, T', 1)
        return F.normalize(self.audio_proj((weights * x).sum(1)), dim=-1)

    def text_embedding(self, text_features: torch.Tensor) -> torch.Tensor:
        """(B, 384) pooled MiniLM vectors -> (B, embed_dim) L2-normalised."""
        return F.normalize(self.text_proj(text_features.float()), dim=-1)

    def score(self, audio: torch.Tensor, conditions: RewardConditions, text_encoder=None) -> torch.Tensor:
        """(B,) cosine (-1..1) between each clip's audio and its text. Uses conditions.text_features (B, 384) if
        given, else encodes conditions.texts (a chain of thought counts by its Semantic part) with `text_encoder`
        (a `foleyflow.models.text_encoder.TextEncoder`, loaded here when None)."""
        feats = conditions.text_features
        if feats is None:
            feats = text_features(conditions.need("texts", "semantic"), text_encoder)
        return (self.audio_embedding(audio) * self.text_embedding(feats.to(audio.device))).sum(-1)

    def loss(self, audio: torch.Tensor, text_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-positive symmetric InfoNCE over a batch of (audio, text) pairs: clips with identical text vectors
        are positives of each other. Returns {"semantic/infonce", "semantic/acc"}."""
        a, t = self.audio_embedding(audio), self.text_embedding(text_features)
        logits = self.logit_scale.exp() * t @ a.t()  # (B text, B audio)
        same = same_text(text_features).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())
        acc = same.gather(1, logits.argmax(1, keepdim=True)).mean()
        return {"semantic/infonce": loss, "semantic/acc": acc}


def same_text(text_features: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """(B, B) bool: which rows of (B, D) text vectors are the same text (each row with itself always). Distances are
    computed exactly: torch.cdist's matrix-product shortcut (used from 25 rows on) leaves rounding errors above
    `tol` on the diagonal, which left rows without a positive and made the InfoNCE target 0/0 (NaN from the first
    step at batch 32)."""
    x = text_features.float()
    same = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") < tol
    return same | torch.eye(len(x), dtype=torch.bool, device=x.device)


def semantic_text(text: str) -> str:
    """The Semantic part of a chain of thought (FoleyWorld's format, parts on one line or several:
    `foleyflow.world.text.parse_cot`), or the text itself when it is a plain prompt or has no Semantic part."""
    from foleyflow.errors import FoleyError
    from foleyflow.world.text import parse_cot

    try:
        part = parse_cot(text).semantic
    except FoleyError:  # not a chain of thought
        return text
    return part or text


def text_features(texts: list[str], text_encoder=None) -> torch.Tensor:
    """(B, 384) pooled MiniLM vectors of the texts' semantic parts; loads MiniLM (offline) when no encoder is given."""
    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

    enc = text_encoder or load_text_encoder(TextEncoderConfig(overflow="truncate"))
    return enc.encode([semantic_text(t) for t in texts]).pooled.float().cpu()


def hashed_text_features(texts: list[str], dim: int = TEXT_DIM) -> torch.Tensor:
    """(B, dim) L2-normalised signed bag of words (blake2b of each lower-cased word): a stand-in for MiniLM in tests
    and debug runs, where identical texts map to identical vectors and shared words to similar ones."""
    out = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for word in semantic_text(text).lower().replace(",", " ").replace(".", " ").split():
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    return F.normalize(out, dim=-1)


def save_semantic_reward(path, model: SemanticRewardModel, provenance: dict | None = None):
    return save_reward(path, model, KIND, provenance)


def load_semantic_reward(path) -> SemanticRewardModel:
    return load_reward(path, KIND, SemanticRewardConfig, SemanticRewardModel)
