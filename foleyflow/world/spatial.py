"""Where a FoleyWorld sound is: stereo panning, binaural rendering with the measured KEMAR HRTF, and room reverberation.

Panning is the constant-power sine/cosine law: for pan p in [-1, 1], L = cos((p + 1) pi / 4), R = sin((p + 1) pi / 4),
so L^2 + R^2 = 1 and the inter-channel level difference is 20 log10(R / L) dB. Binaural mode convolves with head-related
impulse responses from the MIT KEMAR measurements (Gardner & Martin, 1994) as shipped in SOFA format by Debian's
libmysofa, read with h5py, at elevation 0, resampled to the scene rate; pan p maps to azimuth -p * 90 degrees (SOFA
azimuth is counter-clockwise, positive to the left). The HRIRs' common leading delay is removed so onsets stay exact.
Moving binaural sources cross-fade between the two nearest measured azimuths sample by sample.

Rooms are synthetic stereo impulse responses: decorrelated exponentially decaying noise (Schroeder's diffuse-tail
model) with a room-dependent RT60 (high frequencies decaying twice as fast), a pre-delay and a wet level; "dry" has
none. This departs from measured rooms (none ship in Debian) but gives the audible size cue we need.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from foleyflow.errors import ConfigError, MissingResourceError

DEFAULT_HRTF = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"
HRTF_HINT = "apt-get install libmysofa1"
MAX_AZIMUTH_DEG = 90.0

# room -> (RT60 s, pre-delay s, wet level dB relative to the dry signal)
ROOM_SPECS = {"dry": None, "small_room": (0.45, 0.004, -12.0), "hall": (1.9, 0.025, -7.0)}


def pan_gains(pan):
    """Constant-power gains (L, R) for pan in [-1, 1] (scalar or array)."""
    theta = (np.clip(np.asarray(pan, dtype=np.float32), -1.0, 1.0) + np.float32(1.0)) * np.float32(np.pi / 4)
    return np.cos(theta), np.sin(theta)


def expected_ild_db(pan: float) -> float:
    """Inter-channel level difference 20 log10(R/L) in dB that the pan law gives (clipped to +-60 dB)."""
    gl, gr = pan_gains(pan)
    return float(np.clip(20 * np.log10(max(gr, 1e-3) / max(gl, 1e-3)), -60, 60))


def pan_at(times_s: np.ndarray, pan: float, pan_track=None) -> np.ndarray | float:
    """Pan value at absolute times from a track [(t, pan), ...] (held at its ends), else the constant `pan`."""
    if not pan_track:
        return pan
    tt, pp = np.asarray(pan_track, dtype=np.float64).T
    return np.interp(times_s, tt, pp)


def control_times(onset_s: float, num_samples: int, sample_rate: int) -> tuple[np.ndarray, int]:
    """Absolute times of a 1 kHz control grid over an event: (times_s (ceil(N / step),), step in samples)."""
    step = max(1, sample_rate // 1000)
    return onset_s + np.arange(0, num_samples, step) / sample_rate, step


def pan_mono(x: np.ndarray, pan: float = 0.0, pan_track=None, onset_s: float = 0.0,
             sample_rate: int = 16000) -> np.ndarray:
    """Mono (N,) -> stereo (2, N) with the constant-power law; a pan_track (absolute times) moves the source
    (its gains are evaluated at a 1 kHz control rate and held in between)."""
    if pan_track:
        times, step = control_times(onset_s, len(x), sample_rate)
        gl, gr = pan_gains(pan_at(times, pan, pan_track))
        gl, gr = np.repeat(gl, step)[:len(x)], np.repeat(gr, step)[:len(x)]
    else:
        gl, gr = pan_gains(pan)
    return np.stack([x * gl, x * gr]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------------- HRTF ---

class Hrtf:
    """Horizontal-plane HRIRs: `azimuths_deg` (M,) ascending from -180 (wrapped), `irs` (M, 2, L) float32 at
    `sample_rate`."""

    def __init__(self, azimuths_deg: np.ndarray, irs: np.ndarray, sample_rate: int):
        self.azimuths_deg, self.irs, self.sample_rate = azimuths_deg, irs, sample_rate

    def _neighbours(self, az):
        az = np.asarray(az, dtype=np.float64)
        grid = self.azimuths_deg
        idx = np.clip(np.searchsorted(grid, az) - 1, 0, len(grid) - 2)
        w = np.clip((az - grid[idx]) / (grid[idx + 1] - grid[idx]), 0.0, 1.0)
        return idx, w

    def render(self, x: np.ndarray, azimuth_deg, onset_s: float = 0.0) -> np.ndarray:
        """Mono (N,) -> binaural (2, N) for a fixed azimuth (scalar) or a moving one: a callable from absolute
        times (s) to azimuths, applied per ~32 ms block (50%-overlapped Hann blocks, one interpolated HRIR each)."""
        from scipy import fft
        from scipy.signal import oaconvolve

        n = len(x)
        if not callable(azimuth_deg):
            i, w = self._neighbours(float(azimuth_deg))
            ir = (1 - w) * self.irs[i] + w * self.irs[i + 1]
            return oaconvolve(x[None], ir, axes=-1)[:, :n].astype(np.float32)
        hop = 1 << int(round(np.log2(0.016 * self.sample_rate)))
        ir_len = self.irs.shape[-1]
        nfft = hop * (2 + -(-(ir_len - 1) // hop))              # block (2 hops) + HRIR tail, a multiple of hop
        frames = -(-(n + hop) // hop)
        pad = np.zeros((frames + 1) * hop, np.float32)
        pad[hop:hop + n] = x
        blocks = np.lib.stride_tricks.as_strided(pad, (frames, 2 * hop), (pad.strides[0] * hop, pad.strides[0]))
        window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2 * hop) / (2 * hop))).astype(np.float32)
        centres = np.arange(frames) * hop / self.sample_rate + onset_s   # block f centred on sample f*hop of x
        idx, w = self._neighbours(np.asarray(azimuth_deg(centres), dtype=np.float64))
        irs = (1 - w)[:, None, None] * self.irs[idx] + w[:, None, None] * self.irs[idx + 1]   # (F, 2, L)
        spec = fft.rfft(blocks * window, nfft, axis=-1)[:, None] * fft.rfft(irs, nfft, axis=-1)
        y = fft.irfft(spec, nfft, axis=-1).astype(np.float32)        # (F, 2, nfft)
        k = nfft // hop
        out = np.zeros((2, frames + k, hop), np.float32)
        for j in range(k):
            out[:, j:j + frames] += y[:, :, j * hop:(j + 1) * hop].transpose(1, 0, 2)
        return out.reshape(2, -1)[:, hop:hop + n]


def pan_to_azimuth(pan, max_azimuth_deg: float = MAX_AZIMUTH_DEG):
    """Screen pan (-1 left .. 1 right) -> SOFA azimuth in degrees (positive = left)."""
    return -np.clip(pan, -1.0, 1.0) * max_azimuth_deg


@lru_cache(maxsize=4)
def load_hrtf(sample_rate: int = 16000, path: str | Path | None = None) -> Hrtf:
    """Reads the horizontal plane of a SOFA HRTF (default: Debian's MIT KEMAR) and resamples it to `sample_rate`."""
    import h5py
    from math import gcd

    from scipy.signal import resample_poly

    path = Path(path or DEFAULT_HRTF)
    if not path.is_file():
        raise MissingResourceError(f"HRTF file not found at {path}; install it with `{HRTF_HINT}` or pass its path")
    try:
        with h5py.File(path, "r") as f:
            pos = np.asarray(f["SourcePosition"], dtype=np.float64)
            ir = np.asarray(f["Data.IR"], dtype=np.float64)
            src_rate = float(np.asarray(f["Data.SamplingRate"]).ravel()[0])
    except (OSError, KeyError) as e:
        raise MissingResourceError(f"cannot read HRTF {path} as SOFA ({e}); reinstall with `{HRTF_HINT}`") from e
    level = np.abs(pos[:, 1]) < 1e-6
    if not level.any():
        raise MissingResourceError(f"HRTF {path} has no measurements at elevation 0")
    az = (pos[level, 0] + 180.0) % 360.0 - 180.0
    order = np.argsort(az)
    az, ir = az[order], ir[level][order]
    az = np.concatenate([az, [az[0] + 360.0]])          # wrap so interpolation covers the full circle
    ir = np.concatenate([ir, ir[:1]])
    if int(src_rate) != sample_rate:
        g = gcd(int(src_rate), sample_rate)
        ir = resample_poly(ir, sample_rate // g, int(src_rate) // g, axis=-1)
    peak = np.abs(ir).max()
    lead = int(np.flatnonzero((np.abs(ir) > 0.05 * peak).any(axis=(0, 1)))[0])
    ir = ir[..., max(0, lead - 1):]
    front = ir[np.argmin(np.abs(az))]
    ir = ir / np.sqrt((front ** 2).sum())                # frontal source: L^2 + R^2 energy = 1, like the pan law
    return Hrtf(az, ir.astype(np.float32), sample_rate)


# -------------------------------------------------------------------------------------------------------- rooms ---

@lru_cache(maxsize=16)
def room_impulse_response(room: str, sample_rate: int, seed: int = 0) -> np.ndarray | None:
    """Stereo reverb tail (2, L) float32 for a room, scaled to its wet level; None for "dry"."""
    from scipy.signal import butter, sosfilt

    if room not in ROOM_SPECS:
        raise ConfigError(f"unknown room {room!r}; known: {', '.join(ROOM_SPECS)}")
    spec = ROOM_SPECS[room]
    if spec is None:
        return None
    rt60, predelay, wet_db = spec
    rng = np.random.default_rng([seed, len(room), int(rt60 * 1000)])
    n = int(rt60 * sample_rate)                          # to -60 dB
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((2, n))
    split = min(2000.0, 0.4 * sample_rate)
    low = sosfilt(butter(2, split, "lowpass", fs=sample_rate, output="sos"), noise, axis=-1)
    high = noise - low
    tail = low * np.exp(-6.91 * t / rt60) + high * np.exp(-6.91 * t / (0.5 * rt60))
    onset = np.minimum(1.0, t / 0.005)                  # 5 ms build-up of the diffuse field
    tail *= onset
    tail /= np.sqrt((tail ** 2).sum(axis=1, keepdims=True))
    ir = np.concatenate([np.zeros((2, int(predelay * sample_rate))), tail], axis=1)
    return (ir * 10 ** (wet_db / 20)).astype(np.float32)


@lru_cache(maxsize=16)
def _room_spectrum(room: str, sample_rate: int, num_samples: int):
    from scipy import fft

    ir = room_impulse_response(room, sample_rate)
    nfft = fft.next_fast_len(num_samples + ir.shape[1] - 1, real=True)
    return fft.rfft(ir, nfft, axis=-1).astype(np.complex64), nfft


def apply_room(x: np.ndarray, room: str, sample_rate: int) -> np.ndarray:
    """Stereo (2, N) dry signal -> dry + reverberation (2, N); the tail past N is dropped."""
    from scipy import fft

    if room_impulse_response(room, sample_rate) is None or not x.any():
        return x.astype(np.float32, copy=True)
    spec, nfft = _room_spectrum(room, sample_rate, x.shape[1])
    wet = fft.irfft(fft.rfft(x.astype(np.float32), nfft, axis=-1) * spec, nfft, axis=-1)[:, :x.shape[1]]
    return (x + wet).astype(np.float32)
