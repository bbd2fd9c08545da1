"""Small synthetic clips with exact labels, for testing and benchmarking the evaluation suite without FoleyWorld.

Each clip: a centred noise bed (ambience), a few discrete events (a decaying tone for "marimba", a decaying noise
burst for "snare") at labelled onsets and constant-power pans, and optionally one continuous "engine" hum. Not a
substitute for FoleyWorld: only a known answer for the metrics.
"""
from __future__ import annotations

import numpy as np

from foleyflow.eval.spatial import pan_gains
from foleyflow.events import SoundEvent

TONE_HZ = 523.25   # "marimba" events ring at this frequency


def labelled_events_clip(seed: int, *, duration_s: float = 8.0, sample_rate: int = 16000, num_events: int = 6,
                         bed_level: float = 0.005, continuous: bool = True) -> tuple[np.ndarray, list[SoundEvent]]:
    """(2, num_samples) float32 audio and its events; events at least 0.2 s apart (if they fit)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    x = bed_level * rng.standard_normal((2, n))
    events = [SoundEvent("rain", "ambience", 0.0, duration_s, source_id=None, pan=0.0)]
    for _ in range(1000):
        onsets = np.sort(rng.uniform(0.2, duration_s - 0.5, num_events))
        if num_events < 2 or np.diff(onsets).min() >= 0.2:
            break
    t = np.arange(int(0.8 * sample_rate)) / sample_rate
    for k, t0 in enumerate(onsets):
        cls = "marimba" if rng.random() < 0.5 else "snare"
        if cls == "marimba":
            s = np.sin(2 * np.pi * TONE_HZ * t) * np.exp(-t / 0.12) * np.minimum(1.0, t / 0.002)
            s += 0.5 * rng.standard_normal(len(t)) * np.exp(-t / 0.002)      # the mallet's click
        else:
            s = rng.standard_normal(len(t)) * np.exp(-t / 0.04)
            s /= np.abs(s).max()
        gain = float(rng.uniform(0.2, 0.6))
        pan = float(rng.uniform(-0.9, 0.9))
        gl, gr = pan_gains(pan)
        i = int(round(t0 * sample_rate))
        m = min(len(s), n - i)
        x[0, i:i + m] += gain * gl * s[:m]
        x[1, i:i + m] += gain * gr * s[:m]
        events.append(SoundEvent(cls, "discrete", float(t0), float(t0 + 0.8), source_id=k, gain=gain, pan=pan))
    if continuous:
        t0, t1 = 1.0, min(duration_s, 3.0)
        i0, i1 = int(t0 * sample_rate), int(t1 * sample_rate)
        tt = np.arange(i1 - i0) / sample_rate
        env = np.minimum(1.0, tt / 0.3) * np.minimum(1.0, (tt[-1] - tt) / 0.3)
        hum = 0.02 * env * np.sin(2 * np.pi * 90 * tt)
        x[:, i0:i1] += hum * np.array([[0.7071], [0.7071]])
        events.append(SoundEvent("engine", "continuous", t0, t1, source_id=99, pan=0.0))
    return x.astype(np.float32), events


class ToneClassifier:
    """A fake EventClassifier over ("marimba", "snare"): the share of segment power near TONE_HZ decides."""

    class_names = ("marimba", "snare")
    sample_rate = 16000
    segment_s = 0.25
    pre_s = 0.0

    def __call__(self, segment: np.ndarray) -> np.ndarray:
        mono = segment.mean(axis=0)
        spec = np.abs(np.fft.rfft(mono)) ** 2
        f = np.fft.rfftfreq(len(mono), 1 / self.sample_rate)
        share = spec[np.abs(f - TONE_HZ) < 30].sum() / max(spec.sum(), 1e-20)
        p = float(np.clip(share, 0.0, 1.0))
        return np.array([p, 1.0 - p])
