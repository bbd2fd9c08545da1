"""Reward conditions from the video alone, through the sync encoder's contact head (`foleyflow.models.av_ssl`,
`SyncAVModel.contacts`: per visual token, two frames at 25 fps, [logit that a visible contact starts there, its pan]).

The sync model must be the generator's conditioning encoder (trained on `train`), never the evaluation suite's
offset model (`foleyflow/assets/eval/offset.safetensors`, trained on `evaltrain`): `load_contact_model` refuses a
checkpoint under `assets/eval` or whose provenance names `evaltrain`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from foleyflow.rewards.common import CONTACT_FPS, PAN_FPS, RewardError


def load_contact_model(path: str | Path):
    """A sync_av model with a contact head, checked not to be an evaluation model (RewardError otherwise)."""
    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.models.av_ssl import load_sync_model

    p = Path(path).resolve()
    if "evaltrain" in read_metadata(p).get(PROVENANCE, "") or (p.parent.name == "eval" and p.parent.parent.name
                                                                == "assets"):
        raise RewardError(f"{path} is an evaluation model (evaltrain); rewards must use the generator's sync encoder")
    model = load_sync_model(p).float()
    if not model.cfg.event_head:
        raise RewardError(f"{path} has no contact head (model.event_head: false)")
    return model


@torch.no_grad()
def contacts_from_video(model, frames: torch.Tensor) -> torch.Tensor:
    """frames (B, T, 3, H, W) at 25 fps -> (B, T, 2) contact track [probability, pan] at 25 fps: each token's
    sigmoid probability spread over its two frames; where overlapping segments disagree, the more confident wins."""
    vs = model.cfg.visual
    out = model.contacts(model.visual(frames))  # (B, N, 2)
    b, n = out.shape[:2]
    tps = vs.tokens_per_segment
    first = (torch.arange(n // tps)[:, None] * vs.segment_stride + torch.arange(tps)[None] * vs.tubelet).reshape(-1)
    prob = torch.sigmoid(out[..., 0].float())
    track = torch.zeros(b, frames.shape[1], 2)
    for k in range(vs.tubelet):
        idx = (first + k).clamp(max=frames.shape[1] - 1)
        for j in range(n):
            better = prob[:, j] > track[:, idx[j], 0]
            track[better, idx[j], 0] = prob[better, j]
            track[better, idx[j], 1] = out[better, j, 1].float().clamp(-1, 1)
    return track


def pan_track_from_contacts(contacts: torch.Tensor, duration_s: float, *, threshold: float = 0.5,
                            hold_s: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Tc, 2) contact track at 25 fps -> (pan (B, F), mask (B, F) bool) at 10 fps, F = round(duration_s * 10):
    after each contact with probability >= threshold, its pan holds for hold_s seconds (a later contact replaces
    it); the mask is True on those frames. This is the spatial reward's visual position from the video alone."""
    b, tc = contacts.shape[:2]
    f = int(round(duration_s * PAN_FPS))
    centre = (torch.arange(f) + 0.5) / PAN_FPS
    pan, mask = torch.zeros(b, f), torch.zeros(b, f, dtype=torch.bool)
    for i in range(b):
        hits = torch.nonzero(contacts[i, :, 0] >= threshold)[:, 0]
        for j in hits.tolist():
            t0 = j / CONTACT_FPS
            on = (centre >= t0) & (centre < t0 + hold_s)
            pan[i, on] = contacts[i, j, 1].float()
            mask[i, on] = True
    return pan, mask
