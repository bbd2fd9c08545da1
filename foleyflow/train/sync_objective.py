"""The training objective of the sync model (Synchformer's offset classification, av-benchmark's DeSync), shared by
recipes/train_sync_encoder.py, recipes/train_offset_classifier.py and the offset measure of recipes/eval_models.py:
the training config, how a (video window, shifted audio window, offset class) triple is drawn, and the losses.

Class k: the audio window starts offsets_s[k] seconds after the video window (positive = the sound plays early).
Offsets that do not fit inside the clip are not drawn for that window (so clips must be at least window_s long).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from foleyflow.models.av_ssl import SyncAVConfig
from foleyflow.train.schedule import OptimConfig, Schedule


@dataclass
class SyncDataConfig:
    manifest: str | None = None  # JSONL manifest (foleyflow.manifest); None -> synthetic clips
    synthetic_clips: int = 0  # used when manifest is None
    duration_s: float = 8.0  # synthetic clip length
    size: int = 128  # frames are decoded / rendered at size x size
    cache_clips: int = 256  # decoded clips kept in memory (uint8); set to the manifest size to decode each clip once
    sample_rate: int = 16000
    fps: float = 25.0  # frame rate of the sync encoder


@dataclass
class SyncOptimConfig(OptimConfig):  # linear warm-up, then cosine decay to 10%
    lr: float = 2e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    grad_clip: float = 1.0
    schedule: Schedule = "cosine"
    floor: float = 0.1


@dataclass
class SyncTrainConfig:
    model: SyncAVConfig = field(default_factory=lambda: SyncAVConfig(segment_embed_dim=128))
    data: SyncDataConfig = field(default_factory=SyncDataConfig)
    optim: SyncOptimConfig = field(default_factory=SyncOptimConfig)
    out_dir: str = "runs/sync"
    batch_size: int = 16  # per process
    segment_loss_weight: float = 1.0  # weight of the segment-level contrastive loss (0 = offset loss only)
    offset_loss_weight: float = 1.0  # weight of the offset classification loss
    event_loss_weight: float = 0.0  # weight of the ground-truth contact loss (needs model.event_head)
    event_pos_weight: float = 4.0  # BCE weight of contact tokens (they are rare)
    pan_loss_weight: float = 1.0  # weight of the contact pan regression inside the contact loss
    steps: int = 20000
    log_every: int = 20
    ckpt_every: int = 1000
    keep_states: int = 2
    seed: int = 0
    threads: int = 0  # torch threads per process (0 = leave torch's default)


def sample_window(duration_s: float, cfg: SyncTrainConfig, rng: np.random.Generator) -> tuple[int, float]:
    """(class k, video start in s on the frame grid) such that video and shifted audio windows lie inside the clip.
    Without the offset loss only the aligned class (offset 0, or the smallest) is drawn."""
    w, fps, offsets = cfg.model.window_s, cfg.data.fps, cfg.model.offsets_s
    choices = []
    aligned_k = int(np.argmin(np.abs(offsets)))
    for k, o in enumerate(offsets):
        if cfg.offset_loss_weight <= 0 and k != aligned_k:
            continue
        lo, hi = math.ceil(max(0.0, -o) * fps - 1e-6), math.floor(min(duration_s - w, duration_s - w - o) * fps + 1e-6)
        if hi >= lo:
            choices.append((k, lo, hi))
    if not choices:
        raise ValueError(f"a {duration_s:.2f} s clip is too short for {w} s windows")
    k, lo, hi = choices[int(rng.integers(len(choices)))]
    return k, int(rng.integers(lo, hi + 1)) / fps


def offset_losses(logits: torch.Tensor, labels: torch.Tensor, offsets_s: tuple[float, ...]) -> dict:
    """logits (B, K) against offset classes (B,): cross-entropy, accuracy (exact and within one class) and the mean
    absolute offset error in seconds."""
    pred = logits.argmax(-1)
    grid = torch.tensor(offsets_s, device=logits.device)
    return {"sync/ce": torch.nn.functional.cross_entropy(logits, labels),
            "sync/acc": (pred == labels).float().mean(),
            "sync/acc_within_1": ((pred - labels).abs() <= 1).float().mean(),
            "sync/abs_offset_error_s": (grid[pred] - grid[labels]).abs().mean()}


def contact_losses(out: torch.Tensor, contact: torch.Tensor, pan: torch.Tensor, pos_weight: float,
                   pan_weight: float) -> dict:
    """out (B, N, 2) [logit, pan] against (B, N) contact and pan targets: weighted BCE + masked pan MSE, and the
    token-level F1 at logit 0 and the pan error on true contacts."""
    logit, pred_pan = out[..., 0].float(), out[..., 1].float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logit, contact, pos_weight=torch.tensor(pos_weight, device=logit.device))
    mask = contact > 0
    n_pos = mask.sum().clamp(min=1)
    pan_mse = ((pred_pan - pan) ** 2 * mask).sum() / n_pos
    hit = (logit > 0)
    tp = (hit & mask).sum()
    f1 = 2 * tp / (hit.sum() + mask.sum()).clamp(min=1)
    return {"sync/contact_loss": bce + pan_weight * pan_mse, "sync/contact_bce": bce, "sync/contact_f1": f1.float(),
            "sync/contact_pan_mae": ((pred_pan - pan).abs() * mask).sum() / n_pos}
