"""Spatial and aesthetic measurements of stereo audio: GCC-PHAT time difference, level difference, pan, loudness.

- GCC-PHAT (Knapp & Carter 1976): the phase-transform-weighted cross-correlation of the two channels; its peak within
  +-max_delay gives the inter-channel time difference (ITD), refined by FFT upsampling.
- ILD: 10 log10(E_left / E_right) in dB. Pan: the ILD inverted through FoleyWorld's constant-power law
  (L = cos((p + 1) pi / 4), R = sin((p + 1) pi / 4)), so p = 4 / pi * atan(rms_R / rms_L) - 1 in [-1, 1].
  A source rendered through an HRTF instead of that law has frequency-dependent ILDs; the pan estimate then measures
  the broadband level balance, not the azimuth.
- Per-event pan error: the estimated pan in a 100 ms window after each labelled onset, with the power of the 18 ms
  just before the onset subtracted per channel (so an ambience bed or the tail of an earlier sound does not pull
  the estimate toward its own pan). Scoring of overlapping events: the window ends 2 ms before the next labelled
  onset of another event; an event whose window would be shorter than `min_window_s` (another event starts within
  it, e.g. simultaneous impacts at different pans) cannot be attributed and is counted as `overlapped`; an event
  whose window holds less than `min_event_share` of power above the background (or less than the background in one
  channel) is `masked`; a silent window is `silent`. These rules are applied to the REFERENCE audio (`scored=`):
  the audio under test is measured at the events attributable in the reference, whatever it holds there (silence
  there counts as pan 0). Continuous events are measured the same way after their onset (a slow fade-in is usually
  `masked`).
- Aesthetic proxies: integrated loudness in LUFS (ITU-R BS.1770 via pyloudnorm; silence reports the -70 LUFS gate),
  clipping ratio (share of samples with |x| >= 0.999), noise floor (10th percentile of 20 ms frame power, dBFS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foleyflow.errors import EvalError

LOUDNESS_FLOOR_LUFS = -70.0


def _stereo(audio) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2 or x.shape[1] == 0:
        raise EvalError(f"stereo audio must have shape (2, num_samples) with num_samples > 0, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise EvalError("audio contains NaN or infinite samples")
    return x


def gcc_phat(left, right, sample_rate: int, *, max_delay_s: float = 0.001, upsample: int = 16,
             frame: int = 4096) -> float:
    """Delay (s) of `right` relative to `left` (positive: the right channel lags, the source is on the left)
    by GCC-PHAT, searched within +-max_delay_s, resolution 1 / (upsample x sample_rate). Inputs (num_samples,).
    Cross-spectra of half-overlapping `frame`-sample segments (zero-padded to twice their length) are summed before
    the phase transform, which keeps the FFTs short on long clips."""
    l, r = np.asarray(left, np.float64), np.asarray(right, np.float64)
    if l.shape != r.shape or l.ndim != 1 or l.size == 0:
        raise EvalError(f"GCC-PHAT needs two equal non-empty 1-D channels, got {l.shape} and {r.shape}")
    frame = min(frame, len(l))
    hop = max(1, frame // 2)
    starts = range(0, max(1, len(l) - frame + 1), hop)
    n = 1 << (2 * frame - 1).bit_length()
    lf = np.stack([l[i:i + frame] for i in starts])
    rf = np.stack([r[i:i + frame] for i in starts])
    cross = (np.fft.rfft(rf, n) * np.conj(np.fft.rfft(lf, n))).sum(axis=0)
    mag = np.abs(cross)
    if mag.max() == 0:
        return 0.0
    cross = cross / np.maximum(mag, 1e-12 * mag.max())
    cc = np.fft.irfft(cross, n * upsample)
    max_lag = max(1, min(int(round(max_delay_s * sample_rate * upsample)), n * upsample // 2 - 1))
    lags = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])          # lags -max_lag .. +max_lag
    return float((int(np.argmax(lags)) - max_lag) / (upsample * sample_rate))


def ild_db(audio, *, eps: float = 1e-12) -> float:
    """Inter-channel level difference 10 log10(E_left / E_right) in dB of (2, num_samples) audio."""
    x = _stereo(audio)
    el, er = (x ** 2).mean(axis=1)
    return float(10.0 * np.log10((el + eps) / (er + eps)))


def pan_from_powers(power_left: float, power_right: float) -> float:
    """Pan in [-1, 1] from channel powers, inverting the constant-power law; 0 for silence."""
    if power_left <= 0 and power_right <= 0:
        return 0.0
    return 4.0 / math.pi * math.atan2(math.sqrt(max(power_right, 0.0)), math.sqrt(max(power_left, 0.0))) - 1.0


def pan_from_ild(ild: float) -> float:
    """Pan in [-1, 1] from an ILD in dB (10 log10 E_L / E_R) through the constant-power law."""
    return 4.0 / math.pi * math.atan(10.0 ** (-ild / 20.0)) - 1.0


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power gains (left, right) for pan in [-1, 1]."""
    a = (pan + 1.0) * math.pi / 4.0
    return math.cos(a), math.sin(a)


def clip_spatial(audio, sample_rate: int) -> dict:
    """Whole-clip ITD (ms, GCC-PHAT), ILD (dB) and pan of (2, num_samples) audio."""
    x = _stereo(audio)
    ild = ild_db(x)
    return {"itd_ms": 1000.0 * gcc_phat(x[0], x[1], sample_rate), "ild_db": ild, "pan": pan_from_ild(ild)}


# --------------------------------------------------------------------------------------------- per-event pan
@dataclass
class PanMeasure:
    label: float
    estimate: float | None     # None when not scored
    status: str                # "ok", "overlapped", "silent", "outside"

    @property
    def error(self) -> float | None:
        return None if self.estimate is None else abs(self.estimate - self.label)


def _label_pan(event, t: float) -> float:
    if event.pan_track:
        ts, vs = zip(*event.pan_track)
        return float(np.interp(t, ts, vs))
    return float(event.pan)


def event_pans(audio, sample_rate: int, events, *, window_s: float = 0.03, pre_s: float = 0.02,
               min_window_s: float = 0.02, min_event_share: float = 0.5, subtract_background: bool = True,
               scored: list[bool] | None = None, anchors_s: list[float] | None = None) -> list[PanMeasure]:
    """Estimated vs labelled pan for each non-ambience event (`SoundEvent`s) of one (2, num_samples) clip.

    scored: one flag per non-ambience event, normally `[m.status == "ok" for m in event_pans(reference, ...)]`:
    whether an event is attributable is decided on the reference audio, and the audio under test is then measured
    at exactly those events, whatever it holds there (an absent event gives the pan of whatever sounds instead).
    Events not flagged get status "not_scored". None: decide on this audio itself (for the reference).
    anchors_s: per non-ambience event, where its window starts in this audio (e.g. the detected onset matched to
    the label, so a late event is measured where it is, and timing errors stay the onset metrics' business);
    default: the labelled onsets."""
    x = _stereo(audio)
    n = x.shape[1]
    timed = [e for e in events if e.kind != "ambience"]
    if scored is not None and len(scored) != len(timed):
        raise EvalError(f"pan scoring flags: {len(scored)} given for {len(timed)} non-ambience events")
    anchors = [e.onset_s for e in timed] if anchors_s is None else [float(a) for a in anchors_s]
    if len(anchors) != len(timed):
        raise EvalError(f"pan anchors: {len(anchors)} given for {len(timed)} non-ambience events")
    out = []
    for idx, ev in enumerate(timed):
        t0 = anchors[idx]
        if scored is not None and not scored[idx]:
            out.append(PanMeasure(_label_pan(ev, ev.onset_s), None, "not_scored"))
            continue
        others = [a for j, a in enumerate(anchors) if j != idx]
        if any(abs(t - t0) < min_window_s for t in others):
            out.append(PanMeasure(_label_pan(ev, ev.onset_s), None, "overlapped"))
            continue
        end = t0 + window_s
        if ev.offset_s is not None and ev.kind == "continuous":
            end = min(end, ev.offset_s + t0 - ev.onset_s)
        end = min([end] + [t - 0.002 for t in others if t > t0])
        i0, i1 = int(round(t0 * sample_rate)), min(n, int(round(end * sample_rate)))
        label = _label_pan(ev, ev.onset_s + (end - t0) / 2)
        if i1 - i0 < int(min_window_s * sample_rate):
            out.append(PanMeasure(label, None, "outside" if i0 >= n or i1 <= i0 else "overlapped"))
            continue
        p = (x[:, i0:i1] ** 2).mean(axis=1)
        if np.all(p <= 1e-12):
            out.append(PanMeasure(label, None if scored is None else 0.0, "silent"))
            continue
        if subtract_background:
            j0 = max(0, i0 - int(pre_s * sample_rate))
            j1 = max(j0, i0 - int(0.002 * sample_rate))
            if j1 - j0 >= int(0.005 * sample_rate):
                q = p - (x[:, j0:j1] ** 2).mean(axis=1)
                if scored is None and (np.any(q < 0) or q.sum() < min_event_share * p.sum()):
                    out.append(PanMeasure(label, None, "masked"))
                    continue
                if np.any(q > 0):
                    p = np.clip(q, 0.0, None)
        out.append(PanMeasure(label, pan_from_powers(float(p[0]), float(p[1])), "ok"))
    return out


# ------------------------------------------------------------------------------------------- aesthetic proxies
def loudness_lufs(audio, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770) of (channels, num_samples) audio; silence or clips shorter than the
    400 ms gating block report LOUDNESS_FLOOR_LUFS."""
    import pyloudnorm

    x = np.asarray(audio, np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] < int(0.4 * sample_rate) + 1:
        return LOUDNESS_FLOOR_LUFS
    v = pyloudnorm.Meter(sample_rate).integrated_loudness(x.T)
    return float(max(v, LOUDNESS_FLOOR_LUFS)) if np.isfinite(v) else LOUDNESS_FLOOR_LUFS


def clipping_ratio(audio, *, threshold: float = 0.999) -> float:
    """Share of samples (over all channels) with |x| >= threshold."""
    x = np.asarray(audio)
    if x.size == 0:
        raise EvalError("cannot measure clipping of empty audio")
    return float((np.abs(x) >= threshold).mean())


def noise_floor_db(audio, sample_rate: int, *, frame_s: float = 0.02, percentile: float = 10.0) -> float:
    """The `percentile`-th percentile of frame power (mean over channels) in dBFS; floor -120 dB."""
    x = np.asarray(audio, np.float64)
    if x.ndim == 1:
        x = x[None]
    frame = max(1, int(frame_s * sample_rate))
    nf = x.shape[1] // frame
    if nf == 0:
        raise EvalError(f"audio of {x.shape[1]} samples is shorter than one {frame_s * 1000:.0f} ms frame")
    p = (x[:, : nf * frame].reshape(x.shape[0], nf, frame) ** 2).mean(axis=(0, 2))
    return float(10.0 * np.log10(max(np.percentile(p, percentile), 1e-12)))


def aesthetics(audio, sample_rate: int) -> dict:
    """{"loudness_lufs", "clipping_ratio", "noise_floor_db"} of one clip."""
    return {"loudness_lufs": loudness_lufs(audio, sample_rate), "clipping_ratio": clipping_ratio(audio),
            "noise_floor_db": noise_floor_db(audio, sample_rate)}
