"""The plan as a time-aligned condition stream: a (T_latent, C) tensor on the generator's latent timeline, to sit next
to the frame-aligned sync features (issue 19, deliverable 3: the Temporal and Spatial parts in a form a generator can
use without reading numbers out of text). Pure function of the plan; no learned parts.

Timeline: frame f covers time f / latent_fps seconds (frame starts, as the latents' own timeline). Channels
(`TRACK_CHANNELS`, then `num_source_slots` per-source channels):
  0 onset             a narrow Gaussian bump (std `bump_frames` latent frames) at every discrete onset, centred on
                      the nearest frame round(t * latent_fps) (halves round up), where it is 1; overlapping bumps
                      take the maximum
  1 onset_left        the onset bump times the constant-power left gain cos((pan + 1) pi / 4) of the source's pan at
  2 onset_right       that time (sin(...) for right); a source without a place counts as centred
  3 onset_offscreen   the onset bumps of sources that are not on screen (the video cannot show them)
  4 continuous        1 while a non-ambience interval (rolling, an engine, a held sound) lasts
  5 continuous_left   that activity times the left / right gain of the source's pan at each frame
  6 continuous_right
  7 ambience          1 while an ambience bed (rain, wind, room tone) lasts
  8.. source k        activity of the k-th sounding non-ambience source in plan order (k < num_source_slots):
                      DISCRETE_ACTIVE_S after each onset and during its intervals (sources beyond the slots are left
                      out of these channels only)
Sources whose times are unknown (events left out) and silent ones contribute nothing.
"""
from __future__ import annotations

import math

import torch

from foleyflow.cot.render import kind_of
from foleyflow.cot.schema import Plan

TRACK_CHANNELS = ("onset", "onset_left", "onset_right", "onset_offscreen", "continuous", "continuous_left",
                  "continuous_right", "ambience")
DISCRETE_ACTIVE_S = 0.3     # as FoleyWorld's concurrency statistic (foleyflow.world.truth)


def track_channels(num_source_slots: int = 4) -> tuple[str, ...]:
    """Names of the plan track's channels, in order."""
    return TRACK_CHANNELS + tuple(f"source_{k}" for k in range(num_source_slots))


def _gains(pan: float | None) -> tuple[float, float]:
    theta = ((0.0 if pan is None else pan) + 1.0) * math.pi / 4
    return math.cos(theta), math.sin(theta)


def plan_track(plan: Plan, latent_fps: float, num_frames: int, *, bump_frames: float = 0.5,
               num_source_slots: int = 4) -> torch.Tensor:
    """(num_frames, len(track_channels(num_source_slots))) float32 plan track (channels in the module docstring).

    latent_fps: latent frames per second of the generator's audio timeline (e.g. 31.25 for MMAudio's 16 kHz
    codec); num_frames: T_latent; bump_frames: the onset bump's standard deviation in latent frames."""
    if latent_fps <= 0 or num_frames < 0 or bump_frames <= 0 or num_source_slots < 0:
        raise ValueError("plan_track needs latent_fps > 0, num_frames >= 0, bump_frames > 0, num_source_slots >= 0")
    c = len(TRACK_CHANNELS)
    out = torch.zeros(num_frames, c + num_source_slots)
    frames = torch.arange(num_frames, dtype=torch.float64)
    times = frames / latent_fps
    slot = 0
    for src in plan.sources:
        if not src.events:
            continue
        kind = kind_of(src)
        if kind == "ambience":
            for a, b in src.intervals:
                out[:, 7] = torch.maximum(out[:, 7], ((times >= a) & (times < b)).float())
            continue
        active = torch.zeros(num_frames, dtype=torch.bool)
        for t in src.onsets:
            centre = math.floor(t * latent_fps + 0.5)          # the nearest frame (halves round up)
            bump = torch.exp(-0.5 * ((frames - centre) / bump_frames) ** 2).float()
            gl, gr = _gains(src.pan_at(t))
            for ch, g in ((0, 1.0), (1, gl), (2, gr), (3, 0.0 if src.on_screen else 1.0)):
                out[:, ch] = torch.maximum(out[:, ch], bump * g)
            active |= (times >= t) & (times < t + DISCRETE_ACTIVE_S)
        for a, b in src.intervals:
            on = (times >= a) & (times < b)
            active |= on
            pans = [src.pan_at(float(x)) for x in times[on]]
            gains = torch.tensor([_gains(p) for p in pans], dtype=torch.float32).reshape(-1, 2)
            out[on, 4] = 1.0
            out[on, 5] = torch.maximum(out[on, 5], gains[:, 0])
            out[on, 6] = torch.maximum(out[on, 6], gains[:, 1])
        if slot < num_source_slots:
            out[:, c + slot] = torch.maximum(out[:, c + slot], active.float())
        slot += 1
    return out
