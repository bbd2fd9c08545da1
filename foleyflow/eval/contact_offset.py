"""A DeSync offset classifier built from visible contacts and audible onsets.

The offset classifier trained end to end (Synchformer's objective, recipes/train_sync_encoder.py) stayed at chance on
this CPU budget. This one splits the task in two parts that each work:
  - video: a sync_av model trained with the contact head (recipes/train_sync_encoder.py, event_loss_weight > 0, on
    the `evaltrain` split) gives, every 2 frames, the probability that a visible contact starts there;
  - audio: the evaluation suite's onset detector (foleyflow.eval.onsets.detect_onsets, the one that scores onset F1)
    gives the onset times, drawn as Gaussian bumps (sigma 40 ms) on the same 80 ms grid.
The score of DeSync offset o (positive = the audio lags the video) is the Pearson correlation of the contact
sequence with the onset sequence read o seconds later, over the part of the window where both exist. A window
without any detected onset or any likely contact carries no timing evidence; its scores are flat with a slight
preference for offset 0 (so it counts as in sync: missing or extra events are onset F1's business, not DeSync's).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.desync import OFFSETS_S, WINDOW_S

SIGMA_S = 0.04
MIN_CONTACT_PROB = 0.5
CACHE_WINDOWS = 4096  # about 1 MB: (slots,) float32 per window


def contact_slots(model, frames):
    """A sync_av model with a contact head on (1, T, 3, H, W) frames at 25 fps -> (slots,) contact logits and
    (slots,) pans, one slot every `tubelet` frames (slot k starts at frame k * tubelet): the tokens of the overlapping
    segments that start on the same frame are averaged."""
    import torch

    vc = model.cfg.visual
    with torch.no_grad():
        out = model.contacts(model.visual(frames))[0].float()  # (N, 2)
    seg = out.shape[0] // vc.tokens_per_segment
    slot = (torch.arange(seg)[:, None] * vc.segment_stride
            + torch.arange(vc.tokens_per_segment)[None] * vc.tubelet).reshape(-1) // vc.tubelet
    n = int(slot.max()) + 1
    count = torch.zeros(n).index_add_(0, slot, torch.ones(len(slot)))
    mean = torch.zeros(n, 2).index_add_(0, slot, out) / count[:, None]
    return mean[:, 0], mean[:, 1]


class ContactOffsetClassifier:
    """desync.OffsetClassifier: __call__(frames (T, H, W, 3) uint8 at 25 fps, audio (N,) mono) -> (21,) scores."""

    def __init__(self, model, sample_rate: int = 16000):
        if not model.cfg.event_head:
            raise EvalError("the contact offset classifier needs a sync_av model with a contact head")
        self.model = model.eval()
        vc = model.cfg.visual
        self.sample_rate, self.video_fps = int(sample_rate), float(vc.fps)
        self.frame_size = int(vc.image_size)
        self.step_s = vc.tubelet / vc.fps  # one slot per token start frame
        self.identity = getattr(model, "identity", {})
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def contact_probs(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (slots,) contact probability every `step_s`, slot k at k * step_s. The last
        CACHE_WINDOWS results are kept by content: a report scores the same video against several audio sets."""
        import torch

        frames = np.ascontiguousarray(frames)
        key = hashlib.blake2b(frames.data, digest_size=16).digest() + str(frames.shape).encode()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        f = torch.from_numpy(frames).permute(0, 3, 1, 2)[None]
        probs = torch.sigmoid(contact_slots(self.model, f)[0]).numpy()
        self._cache[key] = probs
        if len(self._cache) > CACHE_WINDOWS:
            self._cache.popitem(last=False)
        return probs

    def onset_curve(self, onsets: np.ndarray, duration_s: float, n: int, shift_s: float) -> np.ndarray:
        """(n,) density of `onsets` (s) at times k * step_s + shift_s (NaN outside [0, duration_s])."""
        t = np.arange(n) * self.step_s + shift_s
        curve = np.exp(-0.5 * ((t[:, None] - onsets[None]) / SIGMA_S) ** 2).sum(1) if len(onsets) else np.zeros(n)
        curve[(t < 0) | (t > duration_s)] = np.nan
        return curve

    def __call__(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        frames, audio = np.asarray(frames), np.asarray(audio, np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3 or audio.ndim != 1:
            raise EvalError(f"the offset classifier takes frames (T, H, W, 3) and mono audio (N,), got "
                            f"{frames.shape} and {audio.shape}")
        if frames.shape[0] < self.model.cfg.visual.segment_frames:
            raise EvalError(f"the offset classifier needs at least {self.model.cfg.visual.segment_frames} frames")
        from foleyflow.eval.onsets import detect_onsets

        prior = -1e-3 * np.abs(OFFSETS_S)
        onsets = detect_onsets(audio, self.sample_rate)
        if len(onsets) == 0:
            return prior
        vis = self.contact_probs(frames)
        if vis.max() < MIN_CONTACT_PROB:
            return prior
        scores = []
        for o in OFFSETS_S:
            aud = self.onset_curve(onsets, len(audio) / self.sample_rate, len(vis), float(o))
            ok = ~np.isnan(aud)
            v, a = vis[ok], aud[ok]
            if ok.sum() < 3 or v.std() < 1e-6 or a.std() < 1e-6:
                scores.append(np.nan)
            else:
                scores.append(float(np.corrcoef(v, a)[0, 1]))
        scores = np.asarray(scores)
        if np.all(np.isnan(scores)):
            return prior
        return np.nan_to_num(scores, nan=-1.0) + prior


def is_contact_model(meta: dict) -> bool:
    """True for a sync_av checkpoint whose offsets come from contacts (the recipe trained no offset head)."""
    import json

    from foleyflow.checkpoint import PROVENANCE

    return json.loads(meta.get(PROVENANCE, "{}")).get("offset_method") == "contacts"


__all__ = ["ContactOffsetClassifier", "contact_slots", "is_contact_model", "WINDOW_S"]
