"""Which of FoleyWorld's onsets can be heard in the final mix: labels the renderer adds to the ground truth.

The renderer knows every sound it adds, so it can say for each labelled onset whether it stands out of the rest of
the mix, and which unlabelled but real onsets the mix holds. Two labels, both read by `foleyflow.eval.truth`:

- `params["audible"]` (bool) on each discrete event: True when, in the first `WINDOW_S` after its onset, the event's
  own (dry) sound is at least `AUDIBLE_DB` above the rest of the mix (everything else: other sources, the same
  source still ringing from earlier strikes, ambience, reverberation) in at least one of `BANDS` frequency bands
  that holds at least `BAND_SHARE` of the event's energy (energy per band, as a listener's critical bands or a
  spectral onset detector compare them). A soft bounce under a
  loud engine, or a bell struck again while it still rings as loud, is False: no listener or detector can place it.
- `params["transients_s"]` (sorted seconds) on the rain event: the droplets whose click rises at least `DROPLET_DB`
  above the rest of the mix in the `DROPLET_S` after it (energy, all bands): real onsets that no discrete event
  describes. Quieter droplets merge into the hiss and are not listed.

Neither label changes the audio. Our own criterion (no published protocol labels audibility); the thresholds were
chosen on FoleyWorld clips of other seeds than those we report on (docs/evaluation.md).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

WINDOW_S = 0.04        # how much of a discrete event's start is compared with the rest of the mix
AUDIBLE_DB = 0.0       # event / rest energy ratio needed in at least one band
BANDS = (0.0, 300.0, 700.0, 1500.0, 3000.0, 6000.0, None)   # band edges in Hz (None: Nyquist)
BAND_SHARE = 0.1       # a band is compared only if it holds at least this share of the event's own energy
DROPLET_S = 0.006      # a droplet click's length
DROPLET_DB = 0.0       # click / rest energy ratio for a listed droplet
PULSE_S = 0.02         # window after an engine firing cycle's start
PULSE_DB = 0.0         # engine / rest energy ratio for a listed firing cycle


@lru_cache(maxsize=8)
def _band_plan(sample_rate: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann window (n,) and the first rfft bin of each band (len(BANDS) - 1,) for np.add.reduceat."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    edges = [f if f is not None else sample_rate / 2 + 1 for f in BANDS[:-1]]
    return np.hanning(n), np.searchsorted(freqs, edges)


def band_energies(x: np.ndarray, sample_rate: int, n: int) -> np.ndarray:
    """(..., len(BANDS) - 1) band energies of (..., channels, <= n) audio, zero-padded to n, summed over channels
    (Hann window). Every band must hold at least one bin (n of at least a few ms)."""
    window, starts = _band_plan(sample_rate, n)
    seg = np.zeros((*x.shape[:-1], n), np.float64)
    seg[..., : x.shape[-1]] = x[..., :n]
    spec = (np.abs(np.fft.rfft(seg * window, axis=-1)) ** 2).sum(-2)
    return np.add.reduceat(spec, starts, axis=-1)


def event_to_rest_db(own: np.ndarray, mix: np.ndarray, start: int, sample_rate: int) -> np.ndarray:
    """Per band, 10 log10(E_event / E_rest) over the WINDOW_S from `start`: `own` is the event's (2, <= W) sound
    from its onset, `mix` the whole (2, N) mix (the event included); -inf in bands holding less than BAND_SHARE of
    the event's energy (a faint contact click in a band nothing else fills does not make a hit audible)."""
    w = int(round(WINDOW_S * sample_rate))
    seg = mix[:, start:start + w].astype(np.float64)
    mine = np.zeros_like(seg)
    k = min(own.shape[1], seg.shape[1])
    mine[:, :k] = own[:, :k]
    e_own, e_rest = band_energies(np.stack([mine, seg - mine]), sample_rate, w)
    ratio = np.full(len(e_own), -np.inf)
    main = e_own >= BAND_SHARE * e_own.sum()        # only bands that hold a real part of the event's sound
    if e_own.sum() > 0:
        ratio[main] = 10.0 * np.log10(e_own[main] / np.maximum(e_rest[main], 1e-20))
    return ratio


def is_audible(own: np.ndarray, mix: np.ndarray, start: int, sample_rate: int, threshold_db: float = AUDIBLE_DB
               ) -> bool:
    return bool(event_to_rest_db(own, mix, start, sample_rate).max() >= threshold_db)


def own_to_rest_db(own: np.ndarray, mix: np.ndarray, positions: np.ndarray, sample_rate: int, window_s: float
                   ) -> np.ndarray:
    """(D,) 10 log10(E_own / E_rest) over the `window_s` from each position (absolute samples in the (2, N) `mix`;
    `own` the (2, N) part of the mix being labelled, e.g. all droplet clicks together). A window that would run past
    the clip's end is moved back to end there."""
    w = max(1, int(round(window_s * sample_rate)))
    n = mix.shape[1]
    first = np.clip(np.asarray(positions, np.int64), 0, max(0, n - w))    # a window never runs past the clip end
    idx = first[:, None] + np.arange(min(w, n))
    o = own[:, idx]                                                  # (channels, D, w)
    r = mix[:, idx] - o
    e_own = np.einsum("cdw,cdw->d", o, o).astype(np.float64)
    e_rest = np.einsum("cdw,cdw->d", r, r).astype(np.float64)
    return 10.0 * np.log10(np.maximum(e_own, 1e-30) / np.maximum(e_rest, 1e-20))


def droplet_to_rest_db(clicks: np.ndarray, mix: np.ndarray, positions: np.ndarray, sample_rate: int) -> np.ndarray:
    """(D,) click-to-rest ratio (dB) over the DROPLET_S from each droplet's first sample (overlapping droplets' clicks
    count together)."""
    return own_to_rest_db(clicks, mix, positions, sample_rate, DROPLET_S)


def droplet_times(clicks: np.ndarray, mix: np.ndarray, positions: np.ndarray, sample_rate: int,
                  threshold_db: float = DROPLET_DB) -> list[float]:
    """Sorted times (s, 0.1 ms) of the droplets loud enough to list (see the module docstring)."""
    positions = np.asarray(positions, np.int64)
    if len(positions) == 0:
        return []
    keep = positions[droplet_to_rest_db(clicks, mix, positions, sample_rate) >= threshold_db]
    return sorted({round(float(p) / sample_rate, 4) for p in keep})


def pulse_times(own: np.ndarray, mix: np.ndarray, positions: np.ndarray, sample_rate: int,
                threshold_db: float = PULSE_DB) -> list[float]:
    """Sorted times (s, 0.1 ms) of an engine's firing cycles (first samples `positions`; `own` its (2, N) sound in
    the mix) where, over the PULSE_S after the cycle start, the engine is at least `threshold_db` above the rest."""
    positions = np.asarray(positions, np.int64)
    if len(positions) == 0:
        return []
    ratio = own_to_rest_db(own, mix, positions, sample_rate, PULSE_S)
    return sorted({round(float(p) / sample_rate, 4) for p in positions[ratio >= threshold_db]})
