"""Physically based sound synthesis for FoleyWorld: modal impacts, friction, a Doppler-shifted engine, ambience beds.

Impacts follow modal synthesis as in van den Doel, Kry & Pai, "FoleyAutomatic: physically-based sound effects for
interactive simulation and animation" (SIGGRAPH 2001): a struck object is a sum of exponentially damped sinusoids whose
frequencies, dampings and gains come from its material and shape. Where we simplify: mode frequency ratios are fixed
per material (free-free bar ratios for wood, plate/bell-like inharmonic ratios for metal and glass) and scale as
1/size; each mode's decay follows a constant material loss factor eta (decay rate pi * eta * f, so high modes die
first); the contact force is a Hertzian half-sine pulse whose duration shrinks with impact speed as v^(-1/5), so a
faster hit excites high modes more (brighter) as well as harder (louder, amplitude proportional to speed).
Friction (rolling/sliding) is noise whose level and brightness follow the speed, coloured by the object's lowest
modes, with the rotation rate's rumble for rolling. The engine is a harmonic series at the firing rate whose phase
integrates the Doppler-shifted frequency f * c / (c + v_radial), v_radial the time derivative of the distance
(propagation delay is ignored), with level proportional to 1/distance. Ambience beds are filtered noise: rain with
random droplet clicks, wind with slow gusts, room tone with mains hum.

All functions are numpy-vectorised, return float32, and take a numpy Generator for every random choice. Stationary
noise comes from per-process pools of pre-filtered noise (fixed seeds) read at random offsets, which keeps a scene's
audio within a few tens of milliseconds.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SPEED_OF_SOUND = 343.0
REF_SIZE = 0.2            # size (world units, ~metres) at which a material sounds at its base frequency
REF_SPEED = 3.0           # impact speed (m/s) that gives a peak of 1.0
FRICTION_RAMP_S = 0.12    # fade in/out of friction noise

# base_hz at REF_SIZE, mode ratios, relative mode gains, loss factor eta, contact time (s) at 1 m/s
MATERIALS: dict[str, dict] = {
    "wood": dict(base_hz=700.0, ratios=(1.0, 2.76, 5.40, 8.93, 13.34), gains=(1.0, 0.55, 0.35, 0.2, 0.1),
                 eta=0.012, contact_s=0.0006),
    "metal": dict(base_hz=900.0, ratios=(1.0, 2.32, 4.25, 6.63, 9.38, 12.8), gains=(1.0, 0.8, 0.6, 0.45, 0.3, 0.2),
                  eta=0.0006, contact_s=0.00015),
    "glass": dict(base_hz=1800.0, ratios=(1.0, 2.61, 4.80, 7.54, 10.9), gains=(1.0, 0.6, 0.4, 0.25, 0.15),
                  eta=0.002, contact_s=0.0001),
    "plastic": dict(base_hz=500.0, ratios=(1.0, 1.84, 2.93, 4.21, 5.70), gains=(1.0, 0.6, 0.4, 0.2, 0.1),
                    eta=0.03, contact_s=0.0005),
}


def _material(name: str) -> dict:
    from foleyflow.errors import ConfigError

    if name not in MATERIALS:
        raise ConfigError(f"unknown material {name!r}; known: {', '.join(MATERIALS)}")
    return MATERIALS[name]


@lru_cache(maxsize=64)
def _sos(kind: str, freqs: tuple[float, ...] | float, sample_rate: int, order: int = 2) -> np.ndarray:
    from scipy.signal import butter

    nyq = sample_rate / 2
    f = np.clip(np.atleast_1d(freqs), 10.0, 0.95 * nyq)
    return butter(order, f if len(f) > 1 else f[0], btype=kind, fs=sample_rate, output="sos")


def _filt(kind: str, freqs, x: np.ndarray, sample_rate: int, order: int = 2) -> np.ndarray:
    from scipy.signal import sosfilt

    key = tuple(float(f) for f in freqs) if np.ndim(freqs) else float(freqs)
    return sosfilt(_sos(kind, key, sample_rate, order), x, axis=-1).astype(np.float32)


POOL_SAMPLES = 1 << 19   # length of each cached filtered-noise pool (~33 s at 16 kHz)


@lru_cache(maxsize=32)
def _noise_pool(kind: str, freqs: tuple[float, ...] | float, sample_rate: int) -> np.ndarray:
    """(2, POOL_SAMPLES) float32 noise through a fixed filter, made once per process from a fixed seed."""
    seed = [sample_rate, len(kind), *np.atleast_1d(freqs).astype(int).tolist()]
    noise = np.random.default_rng(seed).standard_normal((2, POOL_SAMPLES), dtype=np.float32)
    return _filt(kind, freqs, noise, sample_rate)


def filtered_noise(kind: str, freqs, channels: int, num_samples: int, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(channels, N) stationary filtered Gaussian noise: a window at a random offset of a cached pool (fast)."""
    pool = _noise_pool(kind, tuple(float(f) for f in np.atleast_1d(freqs)) if np.ndim(freqs) else float(freqs),
                       sample_rate)
    reps = -(-num_samples // (POOL_SAMPLES // 2))
    out = np.empty((channels, num_samples), np.float32)
    for c in range(channels):
        row = pool[(c + int(rng.integers(2))) % 2]
        off = int(rng.integers(0, POOL_SAMPLES // 2))
        seg = row[off:off + num_samples] if reps <= 1 else np.tile(row, reps + 1)[off:off + num_samples]
        out[c] = seg
    return out


def mode_frequencies(material: str, size: float, sample_rate: int) -> np.ndarray:
    """Hz of the material's modes for an object of `size` (smaller = higher), without those above 0.45 * rate."""
    m = _material(material)
    f = m["base_hz"] * (REF_SIZE / float(np.clip(size, 0.01, 5.0))) * np.asarray(m["ratios"])
    return f[f < 0.45 * sample_rate]


def contact_time(material: str, impact_speed: float) -> float:
    """Hertzian contact duration (s): shorter for harder materials and faster hits (proportional to v^-1/5)."""
    return _material(material)["contact_s"] * float(max(impact_speed, 1e-3)) ** -0.2


def modal_impact(material: str, size: float, impact_speed: float, sample_rate: int,
                 rng: np.random.Generator, max_s: float = 3.0) -> np.ndarray:
    """One impact: (num_samples,) float32, onset at sample 0, peak = impact_speed / REF_SPEED (capped at 2).

    Ends where the slowest mode has decayed by 60 dB (at most `max_s`, with a short fade)."""
    m = _material(material)
    freqs = mode_frequencies(material, size, sample_rate)
    if len(freqs) == 0:                      # an object so small all its modes are ultrasonic: a click
        freqs = np.array([0.4 * sample_rate])
    k = len(freqs)
    freqs = freqs * (1.0 + 0.01 * rng.standard_normal(k))
    gains = np.asarray(m["gains"][:k]) * np.exp(0.2 * rng.standard_normal(k))
    tau = contact_time(material, impact_speed)
    gains = gains / (1.0 + (2.0 * freqs * tau) ** 2)        # envelope of the half-sine force spectrum
    decay = np.pi * m["eta"] * freqs + 3.0                  # 1/s; +3: radiation/air loss floor
    length_s = min(max_s, float(np.log(1000.0) / decay.min()))
    n = max(16, int(length_s * sample_rate))
    t = np.arange(n, dtype=np.float32) / sample_rate
    phase = rng.uniform(0, 0.3, size=k).astype(np.float32)   # near-zero phase: sharp, click-free start
    x = (gains[:, None].astype(np.float32) * np.exp(-decay[:, None].astype(np.float32) * t)
         * np.sin(2 * np.pi * freqs[:, None].astype(np.float32) * t + phase[:, None])).sum(0)
    burst_n = max(8, int(0.002 * sample_rate))              # contact noise: 2 ms, relatively louder when faster
    burst = rng.standard_normal(burst_n).astype(np.float32) * np.exp(-np.arange(burst_n) / (burst_n / 4))
    x[:burst_n] += 0.1 * min(1.0, impact_speed / REF_SPEED) * np.abs(x).max() * burst
    fade = min(n, int(0.01 * sample_rate))
    x[n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    peak = float(np.abs(x).max()) or 1.0
    return (x * (min(2.0, max(impact_speed, 0.0) / REF_SPEED) / peak)).astype(np.float32)


def friction_noise(speed: np.ndarray, sample_rate: int, rng: np.random.Generator, *, material: str = "wood",
                   size: float = REF_SIZE, rolling: bool = True) -> np.ndarray:
    """Rolling or sliding noise for a per-sample speed track (m/s, shape (num_samples,)). Returns float32 (N,).

    Level is proportional to speed, brightness rises with speed, the object's two lowest modes colour the noise, and
    rolling adds a rumble at the rotation rate speed / (pi * size). Starts and ends with FRICTION_RAMP_S quadratic
    ramps (no onset of its own)."""
    speed = np.maximum(np.asarray(speed, dtype=np.float32), 0.0)
    n = len(speed)
    if n == 0:
        return np.zeros(0, np.float32)
    low = filtered_noise("lowpass", 300.0 if rolling else 800.0, 1, n, sample_rate, rng)[0]
    high = filtered_noise("bandpass", (1000.0, 4000.0) if rolling else (1500.0, 6000.0), 1, n, sample_rate, rng)[0]
    noise = rng.standard_normal(n, dtype=np.float32)
    bright = np.clip(speed / 3.0, 0.0, 1.0)
    x = (1.0 - 0.7 * bright) * low + bright * 0.5 * high
    for f in mode_frequencies(material, size, sample_rate)[:2]:
        x = x + 0.5 * _filt("bandpass", (f / 1.08, f * 1.08), noise, sample_rate)
    level = np.minimum(speed / REF_SPEED, 2.0)
    if rolling:
        rot = np.cumsum(speed / (np.pi * max(size, 0.01)), dtype=np.float64) / sample_rate
        level = level * (1.0 + 0.35 * np.sin(2 * np.pi * rot)).astype(np.float32)
    x = x * level / 0.5
    ramp = min(n // 2, int(FRICTION_RAMP_S * sample_rate))
    if ramp:
        r = np.linspace(0, 1, ramp, dtype=np.float32) ** 2   # gradual start: friction builds up, no onset
        x[:ramp] *= r
        x[n - ramp:] *= r[::-1]
    return (0.1 * x).astype(np.float32)


def engine_hum(distance_m: np.ndarray, sample_rate: int, rng: np.random.Generator, *, f0_hz: float = 45.0,
               ref_distance_m: float = 5.0, harmonics: int = 10,
               radial_velocity: np.ndarray | None = None, info: dict | None = None) -> np.ndarray:
    """An engine heard at a per-sample distance (metres, (num_samples,)); returns float32 (N,).

    info: if given, receives "cycle_starts": the first sample of each firing cycle (its harmonic waveform repeats
    once per cycle: at a 30-48 Hz firing rate each cycle is a pulse a spectral onset detector may fire on).
    Doppler: the received frequency is f0 * c / (c + v_radial), v_radial the given per-sample radial velocity (m/s,
    positive receding) or else dr/dt; level: ref_distance / distance (capped at 1)."""
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), 0.5)
    n = len(d)
    if n == 0:
        return np.zeros(0, np.float32)
    step = max(1, sample_rate // 1000)                       # Doppler and level at a 1 kHz control rate
    dc = d[::step]
    if radial_velocity is not None:
        v_radial = np.asarray(radial_velocity, dtype=np.float64)[::step]
    else:
        v_radial = np.gradient(dc) * (sample_rate / step) if len(dc) > 1 else np.zeros(1)
    f = f0_hz * SPEED_OF_SOUND / (SPEED_OF_SOUND + np.clip(v_radial, -0.8 * SPEED_OF_SOUND, None))
    phase = np.cumsum(np.repeat(f / sample_rate, step)[:n]) + rng.uniform()       # in cycles
    if info is not None:
        info["cycle_starts"] = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    ks = np.arange(1, harmonics + 1)
    amps = ks ** -0.8 * np.exp(0.15 * rng.standard_normal(harmonics))
    amps[ks * f0_hz * 1.3 > 0.45 * sample_rate] = 0.0
    # one period of the harmonic waveform as a wavetable, read at the Doppler-shifted phase
    theta = np.linspace(0, 2 * np.pi, _TABLE + 1)
    table = (amps[:, None] * np.sin(ks[:, None] * theta + rng.uniform(0, 2 * np.pi, (harmonics, 1)))).sum(0)
    i, frac = _table_index(phase)
    x = _wavetable(table / amps.sum(), i, frac)
    rough = filtered_noise("lowpass", 1500.0, 1, n, sample_rate, rng)[0]
    x = x + 0.3 * rough * (0.6 + 0.4 * _wavetable(np.sin(theta), i, frac))
    level = np.repeat(np.minimum(1.0, ref_distance_m / dc), step)[:n]
    ramp = min(n // 2, int(0.05 * sample_rate))
    if ramp:
        level[:ramp] *= np.linspace(0, 1, ramp)
        level[n - ramp:] *= np.linspace(1, 0, ramp)
    return (0.5 * x * level).astype(np.float32)


_TABLE = 4096


def _table_index(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phases in cycles -> (table index (N,) int32, fraction (N,) float32) for _wavetable."""
    pos = (phase - np.floor(phase)) * _TABLE
    i = pos.astype(np.int32)
    return i, (pos - i).astype(np.float32)


def _wavetable(table: np.ndarray, i: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Reads a one-period table (len _TABLE + 1, last = first) at _table_index positions, linearly interpolated."""
    t32 = table.astype(np.float32)
    return t32[i] + frac * (t32[i + 1] - t32[i])


def doppler_frequency(f_hz: float, v_radial: float) -> float:
    """Frequency heard from a source moving away at v_radial m/s (negative when approaching)."""
    return f_hz * SPEED_OF_SOUND / (SPEED_OF_SOUND + v_radial)


def _slow_envelope(n: int, sample_rate: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve around 1 (knots at rate_hz, linearly interpolated and lightly smoothed)."""
    knots = max(2, int(n / sample_rate * rate_hz) + 2)
    vals = np.exp(0.5 * rng.standard_normal(knots))
    return np.interp(np.arange(n), np.linspace(0, n, knots), vals).astype(np.float32)


def rain(num_samples: int, sample_rate: int, rng: np.random.Generator, intensity: float = 1.0,
         info: dict | None = None) -> np.ndarray:
    """Rain bed (2, N): decorrelated band-limited hiss plus random droplet clicks (Poisson, ~80/s at intensity 1).

    info: if given, receives "drop_pos" (each droplet's first sample, int (D,)) and "clicks" (the droplet part of the
    returned bed, (2, N) float32); asking for them draws nothing more from `rng`, so the bed is the same."""
    n = num_samples
    hiss = filtered_noise("bandpass", (600.0, 6000.0), 2, n, sample_rate, rng)
    out = 0.05 * hiss
    drops = rng.poisson(80.0 * intensity * n / sample_rate)
    if drops:
        pos = rng.integers(0, n, size=drops)
        amp = np.minimum(rng.lognormal(-1.6, 0.5, size=drops), 0.6).astype(np.float32)
        pan = rng.uniform(0, np.pi / 2, size=drops)
        kernel_of = rng.integers(0, 4, size=drops)
        klen = int(0.006 * sample_rate)
        t = np.arange(klen) / sample_rate
        freqs = np.minimum(np.array([1800.0, 2600.0, 3400.0, 4200.0]), 0.4 * sample_rate)
        kernels = (np.sin(2 * np.pi * freqs[:, None] * t) * np.exp(-t / 0.0012)).astype(np.float32)
        idx = (pos[:, None] + np.arange(klen)).ravel()
        keep = idx < n
        shape = kernels[kernel_of]                                     # (drops, klen)
        for ch, g in enumerate((np.cos(pan), np.sin(pan))):
            w = ((amp * g)[:, None] * shape).ravel()
            click = np.bincount(idx[keep], weights=w[keep], minlength=n).astype(np.float32)
            out[ch] += click
            if info is not None:
                info.setdefault("clicks", np.zeros((2, n), np.float32))[ch] = intensity * click
    if info is not None:
        info["drop_pos"] = np.sort(pos) if drops else np.zeros(0, np.int64)
        info.setdefault("clicks", np.zeros((2, n), np.float32))
    return (intensity * out).astype(np.float32)


def wind(num_samples: int, sample_rate: int, rng: np.random.Generator, intensity: float = 1.0) -> np.ndarray:
    """Wind bed (2, N): low rumble plus a whistling band whose level follows slow random gusts."""
    n = num_samples
    low = filtered_noise("lowpass", 250.0, 2, n, sample_rate, rng)
    mid = filtered_noise("bandpass", (400.0, 1200.0), 2, n, sample_rate, rng)
    gust = _slow_envelope(n, sample_rate, 0.7, rng)
    shift = int(0.15 * sample_rate)
    gusts = np.stack([gust, np.roll(gust, shift)])
    out = 0.12 * low * gusts + 0.06 * mid * gusts ** 2
    return (intensity * out).astype(np.float32)


def room_tone(num_samples: int, sample_rate: int, rng: np.random.Generator, intensity: float = 1.0) -> np.ndarray:
    """Room tone (2, N): quiet low-passed noise (ventilation) with a faint 50 Hz mains hum and its harmonic."""
    n = num_samples
    air = filtered_noise("lowpass", 400.0, 2, n, sample_rate, rng)
    t = np.arange(n, dtype=np.float32) / sample_rate
    ph = rng.uniform(0, 2 * np.pi)
    hum = 0.004 * np.sin(2 * np.pi * 50 * t + ph) + 0.002 * np.sin(2 * np.pi * 100 * t + 2 * ph)
    return (intensity * (0.05 * air + hum[None])).astype(np.float32)


AMBIENCE = {"rain": rain, "wind": wind, "room_tone": room_tone}
