"""Published reward models a user plugs into GRPO with their own weights, with the interface of ours
(`score(audio, conditions) -> (B,)`, an `identity` with kind, file and sha256 for provenance), loaded by the
maintained packages through the same loaders as the evaluation's published metrics
(`foleyflow.models.published_nets`; docs/rewards.md "Published reward models").

Kinds per reward (GRPO config `rewards.<name>.kind`, file `rewards.<name>.checkpoint`):
  - semantic: `foleyflow` (ours, foleyflow.rewards.semantic), `laion_clap` (LAION-CLAP HTSAT-base, package
    `laion_clap`), `ms_clap` (MS-CLAP 2023, package `msclap`). The CLAP file needs its text model's folder beside it
    (`roberta-base/` or `gpt2/`, config and tokenizer files), as in the evaluation's embedders folder. Score: cosine
    of the text embedding of the Semantic part of the chain of thought (or the prompt) and the audio embedding of
    the mono mix resampled to the model's rate (LAION-CLAP: 48 kHz, repeat-padded to 10 s; MS-CLAP: 44.1 kHz,
    tiled to 7 s or a seeded 7 s crop), -1..1.
  - aesthetic: `foleyflow`, `audiobox` (Audiobox Aesthetics, package `audiobox-aesthetics`; the released
    `checkpoint.pt`, or a `model.safetensors` with its `config.json`). Score: one axis (`rewards.aesthetic.axis`:
    CE, CU, PC or PQ, default PQ) on the package's scale (about 1..10), predicted as `AesPredictor` does: the
    16 kHz mono mix in 10 s windows (the last zero-padded and masked), the window means weighted by their length.
  - temporal: `foleyflow` only. Synchformer's sync head has no maintained package (the released MMAudio pipeline
    uses only its visual branch, docs/mmaudio.md: DeSync is not wired).
  - spatial: `foleyflow` only. StereoCRM has no package and no released weights format to load.
Audio is (B, 2, num_samples) float32 at 16 kHz (foleyflow.rewards.common); scores come back on the audio's device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from foleyflow.errors import ConfigError, FoleyError
from foleyflow.rewards.common import SAMPLE_RATE, RewardConditions, check_audio

KINDS = {"semantic": ("foleyflow", "laion_clap", "ms_clap"), "temporal": ("foleyflow",),
         "aesthetic": ("foleyflow", "audiobox"), "spatial": ("foleyflow",)}
AXES = ("CE", "CU", "PC", "PQ")
NOT_AVAILABLE = {  # kinds a user may expect, and why they cannot be selected
    "synchformer": "no maintained package defines Synchformer with its sync head (MMAudio's uses only the visual "
                   "branch); use kind foleyflow, our temporal reward (recipes/train_reward_temporal.py)",
    "stereocrm": "StereoCRM has no package or released weights format; use kind foleyflow, our spatial reward "
                 "(recipes/train_reward_spatial.py)",
}
WINDOW_S = 10.0  # Audiobox Aesthetics' inference window and hop


def kind_problem(name: str, kind: str, axis: str = "PQ") -> str | None:
    """Why `rewards.<name>.kind` (and axis) cannot be used, in one line; None when it can."""
    if name not in KINDS:
        return f"unknown reward {name!r} (one of {', '.join(KINDS)})"
    if kind in KINDS[name]:
        if kind == "audiobox" and axis not in AXES:
            return f"rewards.{name}.axis must be one of {', '.join(AXES)}, got {axis!r}"
        return None
    if kind.lower() in NOT_AVAILABLE:
        return f"rewards.{name}.kind {kind}: {NOT_AVAILABLE[kind.lower()]}"
    return f"rewards.{name}.kind must be one of {', '.join(KINDS[name])}, got {kind!r}"


def check_reward_spec(name: str, kind: str, checkpoint: str, axis: str = "PQ") -> None:
    """One-line ConfigError for a kind the reward does not have, FoleyError for a missing weights file; loads
    nothing (GRPO checks every reward before loading any)."""
    problem = kind_problem(name, kind, axis)
    if problem:
        raise ConfigError(problem)
    if not checkpoint:
        raise ConfigError(f"rewards.{name}.checkpoint is required when its weight is > 0")
    if not Path(checkpoint).is_file():
        raise FoleyError(f"rewards.{name}.checkpoint not found: {checkpoint}")


def _identity(kind: str, path: str | Path, **extra) -> dict:
    from foleyflow.hashing import file_sha256

    return {"kind": kind, "weights": str(Path(path).resolve()), "sha256": file_sha256(path), "provenance": {},
            **extra}


class ClapReward(nn.Module):
    """Semantic reward from a published CLAP (`foleyflow.models.published_nets.ClapNet`): (B,) cosine of the texts'
    and the audio's embeddings. seed: of MS-CLAP's 7 s crop of longer clips (fixed, so scores are deterministic)."""

    def __init__(self, clap, identity: dict, seed: int = 0):
        super().__init__()
        self.clap, self.net, self.identity, self.seed = clap, clap.net, identity, seed

    def waves(self, audio: torch.Tensor) -> np.ndarray:
        """(B, 2, N) at 16 kHz -> (B, L) float32 model input: the mono mix prepared as the package's loader does."""
        from foleyflow.audio import resample
        from foleyflow.models.published_nets import laion_input, ms_clap_input

        mono = check_audio(audio).mean(1).detach().cpu().double().numpy()
        if self.clap.name == "laion_clap":
            x = resample(mono, SAMPLE_RATE, self.clap.rate, dtype=np.float64)
            return np.stack([laion_input(row, self.seed) for row in x])
        return np.stack([ms_clap_input(row[None], SAMPLE_RATE, self.seed) for row in mono])

    def score(self, audio: torch.Tensor, conditions: RewardConditions) -> torch.Tensor:
        from foleyflow.rewards.semantic import semantic_text

        texts = [semantic_text(t) for t in conditions.need("texts", "semantic")]
        a = self.clap.audio_embeddings(self.waves(audio))
        t = self.clap.text_embeddings(texts).to(a.device)
        return torch.nn.functional.cosine_similarity(a, t, dim=-1).float().to(audio.device)

    forward = score


class AudioboxReward(nn.Module):
    """Aesthetic reward from Audiobox Aesthetics (`foleyflow.models.published_nets.load_audiobox`): (B,) prediction
    of one axis on the package's scale (its target_transform undone), as `AesPredictor.forward` computes it."""

    def __init__(self, net, axis: str, identity: dict):
        super().__init__()
        self.net, self.axis, self.identity = net, axis, identity

    def score(self, audio: torch.Tensor, conditions: RewardConditions | None = None) -> torch.Tensor:
        mono = check_audio(audio).mean(1)  # (B, N) at 16 kHz, the package's rate
        device = next(self.net.parameters()).device
        b, n = mono.shape
        win = int(WINDOW_S * SAMPLE_RATE)
        starts = list(range(0, n, win))
        wavs = torch.zeros(b, len(starts), win)
        masks = torch.zeros(b, len(starts), win, dtype=torch.bool)
        lengths = torch.zeros(len(starts))
        for j, s in enumerate(starts):
            chunk = mono[:, s:s + win].detach().cpu()
            wavs[:, j, :chunk.shape[1]] = chunk
            masks[:, j, :chunk.shape[1]] = True
            lengths[j] = chunk.shape[1] / win
        with torch.inference_mode():
            pred = self.net({"wav": wavs.view(-1, 1, win).to(device), "mask": masks.view(-1, 1, win).to(device)})
        tt = self.net.target_transform[self.axis]
        values = (pred[self.axis].float().cpu() * float(tt["std"]) + float(tt["mean"])).view(b, len(starts))
        return ((values * lengths).sum(1) / lengths.sum()).to(audio.device)

    forward = score


def load_published_reward(name: str, kind: str, checkpoint: str | Path, *, axis: str = "PQ",
                          seed: int = 0) -> nn.Module:
    """The published reward model `kind` for reward `name` from the user's weights file, in eval mode, with
    `.score(audio, conditions) -> (B,)` and `.identity` ({kind, weights, sha256, ...}). One-line errors for a bad
    kind, a missing file, a missing package or weights that do not fit the package's architecture."""
    from foleyflow.models import published_nets as nets

    check_reward_spec(name, kind, str(checkpoint), axis)
    if kind in ("laion_clap", "ms_clap"):
        clap = nets.load_clap(checkpoint, kind)
        text_dir = Path(checkpoint).resolve().parent / nets.TEXT_FOLDERS[kind]
        return ClapReward(clap, _identity(kind, checkpoint, text_folder=str(text_dir)), seed).eval()
    if kind == "audiobox":
        return AudioboxReward(nets.load_audiobox(checkpoint), axis, _identity(kind, checkpoint, axis=axis)).eval()
    raise ConfigError(f"rewards.{name}.kind {kind}: not a published reward (kind foleyflow loads ours)")
