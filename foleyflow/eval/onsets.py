"""Audio onset detection and onset matching (precision / recall / F1 at a tolerance, mean absolute onset error).

Detection is the classic spectral-flux method (Bello et al. 2005, "A tutorial on onset detection in music signals"):
half-wave rectified rise of a log-mel spectrogram (dB) over the frame 10 ms earlier, max-filtered over 3 neighbouring
bands first (SuperFlux, Boeck & Widmer 2013: a gliding engine hum or a beating bell is not an onset), averaged over
the half of the bands that rise most (so a note well above a rain or wind bed in its own bands is not diluted by the
bands the bed holds), an adaptive threshold (moving median + 3.5 dB) and peak picking with a minimum inter-onset
interval. The band fraction and threshold were chosen on FoleyWorld's 200 val clips by recipes/tune_onset_detector.py
(grid 1/0.5/0.35/0.25 x 2.5..4.5 dB; F1 at +-50 ms 0.968 against 0.956 for all bands at 2.5 dB). Departure: each detected peak
is then refined in the time domain to the first 1 ms frame whose level has risen halfway (in dB) from the level just
before the event to its local peak, which makes onsets accurate to a few ms instead of a frame hop plus half a window. The STFT is reflect-padded at the
clip edges, so audio that is already playing at t = 0 (an ambience bed) is not an onset.

Scoring (what MMAudio's script does with a silent 0.3 s tolerance, here made explicit): reference and detected onsets
are matched one-to-one by the Hungarian algorithm on |time difference|, pairs further apart than the tolerance not
allowed, which maximises the number of matches and then minimises their total error. Overlapping events: reference
onsets closer together than `merge_s` (default 30 ms, the detector's minimum inter-onset interval) cannot be told apart
in a mix, so they are merged into one expected onset at the earliest of them (a cluster grows while onsets fall within
`merge_s` of its first onset, so a fast roll becomes one expected onset every `merge_s` at most). Mean absolute onset
error is taken over the pairs matched at the largest tolerance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from foleyflow.errors import EvalError

TOLERANCES_S = (0.025, 0.05, 0.1)


@dataclass
class OnsetConfig:
    win_s: float = 0.032          # STFT window
    hop_s: float = 0.005          # STFT hop (onset function rate 200 Hz)
    n_mels: int = 64
    lag: int = 2                  # frames between compared spectra
    freq_max: int = 3             # SuperFlux: compare with the max over this many neighbouring bands (1 = off)
    relative: float = 0.0         # also require flux above median + relative x the clip's largest flux
    top_fraction: float = 0.5     # flux = mean of this top fraction of band rises (1 = all bands)
    floor_db: float = 80.0        # log-mel floor below the clip maximum
    median_s: float = 0.4         # adaptive threshold: moving median over this span...
    delta_db: float = 3.5         # ...plus this (mean dB rise over the top_fraction bands)
    min_interval_s: float = 0.03  # minimum time between two detected onsets
    refine: bool = True           # refine each onset in the time domain (1 ms level frames)
    silence_db: float = -70.0     # onsets whose local peak is below this (dBFS) are ignored


def _mono(audio) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        if x.shape[0] > 8 and x.shape[1] <= 8:
            raise EvalError(f"audio must be (channels, num_samples), got {x.shape}; transpose it")
        x = x.mean(axis=0)
    if x.ndim != 1 or x.size == 0:
        raise EvalError(f"audio must be (num_samples,) or (channels, num_samples) and non-empty, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise EvalError("audio contains NaN or infinite samples")
    return x


def onset_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float64 triangles on the HTK mel scale from 30 Hz to Nyquist, each summing to 1
    (foleyflow.audio.mel_filterbank): the detector's and the melstats embedding's bands."""
    from foleyflow.audio import mel_filterbank

    return mel_filterbank(sample_rate, n_fft, n_mels, 30.0, None, scale="htk", norm="sum", dtype=np.float64)


def log_mel(audio, sample_rate: int, config: OnsetConfig = OnsetConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel power (frames, n_mels) in dB (floored `floor_db` below the max) and frame centre times (s)."""
    from scipy.signal import stft

    x = _mono(audio)
    win = int(round(config.win_s * sample_rate))
    hop = max(1, int(round(config.hop_s * sample_rate)))
    n_fft = 1 << (win - 1).bit_length()
    _, t, z = stft(x, fs=sample_rate, window="hann", nperseg=win, noverlap=win - hop, nfft=n_fft, boundary="even",
                   padded=True)
    power = (np.abs(z) ** 2).T
    mel = power @ onset_filterbank(sample_rate, n_fft, config.n_mels).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-20))
    db = np.maximum(db, db.max() - config.floor_db)
    return db, t


def onset_strength(audio, sample_rate: int, config: OnsetConfig = OnsetConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Spectral flux (frames,) in dB (mean rise over mel bands) and frame times (s)."""
    db, t = log_mel(audio, sample_rate, config)
    flux = np.zeros(len(db))
    lag = config.lag
    if len(db) > lag:
        prev = db[:-lag]
        if config.freq_max > 1:
            from scipy.ndimage import maximum_filter1d
            prev = maximum_filter1d(prev, size=config.freq_max, axis=1, mode="nearest")
        rise = np.clip(db[lag:] - prev, 0, None)
        if config.top_fraction < 1.0:
            k = max(1, int(round(config.top_fraction * rise.shape[1])))
            rise = np.partition(rise, rise.shape[1] - k, axis=1)[:, -k:]
        flux[lag:] = rise.mean(axis=1)
        flux[:lag] = flux[lag]      # no comparison possible yet: repeat, so the adaptive threshold is not pulled down
    return flux, t


def _level_db(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    e = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    return 10.0 * np.log10(np.maximum(e, 1e-20))


def _refine(level: np.ndarray, frame_s: float, tc: float, prev: float | None, config: OnsetConfig
            ) -> float | None:
    """Onset time near flux peak `tc` from 1 ms levels (dB): in [tc - 30 ms, tc + 45 ms] (not before the previous
    onset), the largest rise from a running minimum to a later frame; the onset is the first frame at least halfway
    (in dB) up that rise. None if the window is silent."""
    lo = max(0.0, tc - 0.03)
    if prev is not None:
        lo = max(lo, prev + config.min_interval_s / 2)
    lo_i, hi_i = int(lo / frame_s), min(len(level), int((tc + 0.045) / frame_s))
    if hi_i <= lo_i:
        return None
    seg = level[lo_i:hi_i]
    if seg.max() < config.silence_db:
        return None
    if not config.refine:
        return tc
    run_min = np.minimum.accumulate(seg)
    rise = seg - run_min
    j = int(np.argmax(rise))
    if rise[j] < 6.0:            # no clear rise at 1 ms resolution (slow attack): keep the flux time
        return tc
    m = int(np.flatnonzero(seg[: j + 1] == run_min[j])[-1])
    thr = run_min[j] + 0.5 * rise[j]
    k = m + int(np.flatnonzero(seg[m: j + 1] >= thr)[0])
    return (lo_i + k) * frame_s


def detect_onsets(audio, sample_rate: int, config: OnsetConfig = OnsetConfig()) -> np.ndarray:
    """Onset times in seconds (sorted) of a mono (num_samples,) or multichannel (channels, num_samples) signal."""
    from scipy.ndimage import maximum_filter1d, median_filter

    x = _mono(audio)
    flux, t = onset_strength(x, sample_rate, config)
    frames_per_s = 1.0 / config.hop_s
    med = median_filter(flux, size=max(3, int(config.median_s * frames_per_s) | 1), mode="reflect")
    wait = max(1, int(round(config.min_interval_s * frames_per_s)))
    is_max = flux == maximum_filter1d(flux, size=2 * wait + 1, mode="nearest")
    thr = med + max(config.delta_db, config.relative * float(flux.max()))
    cand = np.flatnonzero(is_max & (flux > thr))
    # plateaus: keep the first frame of equal neighbouring maxima
    picked: list[int] = []
    for i in cand:
        if not picked or i - picked[-1] > wait:
            picked.append(int(i))
    frame = max(1, int(round(0.001 * sample_rate)))
    level = _level_db(x, frame)
    onsets: list[float] = []
    for i in picked:
        onset = _refine(level, frame / sample_rate, float(t[i]), onsets[-1] if onsets else None, config)
        if onset is None or (onsets and onset - onsets[-1] < config.min_interval_s):
            continue
        onsets.append(onset)
    return np.asarray(onsets, dtype=np.float64)


def librosa_onsets(audio, sample_rate: int, *, hop_s: float = 0.01) -> np.ndarray:
    """Onset times in seconds (sorted) by an independent detector: `librosa.onset.onset_detect` (librosa's own
    spectral-flux onset strength and peak picking, its default parameters) on the mono mix at a `hop_s` frame hop.
    Not used by `foleyflow evaluate`; it checks that a gain measured with `detect_onsets` is not that detector's
    (benchmarks/paired_eval.py). Needs librosa (the `test` extra)."""
    import librosa

    x = _mono(audio).astype(np.float32)
    hop = max(1, int(round(hop_s * sample_rate)))
    t = librosa.onset.onset_detect(y=x, sr=sample_rate, hop_length=hop, units="time")
    return np.sort(np.asarray(t, np.float64))


# ------------------------------------------------------------------------------------------------------ scoring
def merge_onsets(times, merge_s: float = 0.03) -> np.ndarray:
    """Merges onsets closer than `merge_s` to the first onset of their cluster; returns sorted cluster starts."""
    t = np.sort(np.asarray(times, dtype=np.float64).ravel())
    out: list[float] = []
    for v in t:
        if not out or v - out[-1] >= merge_s:
            out.append(float(v))
    return np.asarray(out)


def match_onsets(reference, estimated, tolerance_s: float) -> list[tuple[int, int]]:
    """Optimal one-to-one matching: the most pairs with |ref - est| <= tolerance, then the least total error.
    Returns (reference index, estimated index) pairs."""
    from scipy.optimize import linear_sum_assignment

    r, e = np.asarray(reference, np.float64).ravel(), np.asarray(estimated, np.float64).ravel()
    if len(r) == 0 or len(e) == 0:
        return []
    d = np.abs(r[:, None] - e[None, :])
    ok = d <= tolerance_s + 1e-9
    if not ok.any():
        return []
    big = 1.0 + tolerance_s * (min(len(r), len(e)) + 1)   # any infeasible pair costs more than all feasible ones
    rows, cols = linear_sum_assignment(np.where(ok, d, big))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


def onset_prf(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of (pooled) counts; arrays of any equal shape (e.g. (resamples,) of summed counts)
    -> three float64 arrays of that shape. Nothing to find and nothing found is perfect (1, 1, 1); detections with
    nothing to find have precision 0; nothing detected with something to find has precision 0."""
    tp, fp, fn = (np.asarray(v, np.float64) for v in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), np.where(fn == 0, 1.0, 0.0))
        r = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f1


@dataclass
class OnsetCounts:
    """Counts for one tolerance; add them over clips (micro average) before computing P/R/F1 (`onset_prf`)."""
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return float(onset_prf(self.tp, self.fp, self.fn)[0])

    @property
    def recall(self) -> float:
        return float(onset_prf(self.tp, self.fp, self.fn)[1])

    @property
    def f1(self) -> float:
        return float(onset_prf(self.tp, self.fp, self.fn)[2])

    def __add__(self, other: "OnsetCounts") -> "OnsetCounts":
        return OnsetCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_json(self) -> dict:
        return dict(asdict(self), precision=self.precision, recall=self.recall, f1=self.f1)


@dataclass
class OnsetScores:
    counts: dict[float, OnsetCounts] = field(default_factory=dict)   # tolerance (s) -> counts
    abs_errors_s: list[float] = field(default_factory=list)          # matched pairs at the largest tolerance

    def __add__(self, other: "OnsetScores") -> "OnsetScores":
        keys = sorted(set(self.counts) | set(other.counts))
        return OnsetScores({k: self.counts.get(k, OnsetCounts()) + other.counts.get(k, OnsetCounts()) for k in keys},
                           self.abs_errors_s + other.abs_errors_s)

    @property
    def mean_abs_error_ms(self) -> float | None:
        return 1000.0 * float(np.mean(self.abs_errors_s)) if self.abs_errors_s else None

    def to_json(self) -> dict:
        out = {}
        for tol, c in sorted(self.counts.items()):
            ms = int(round(tol * 1000))
            out.update({f"onset_precision@{ms}ms": c.precision, f"onset_recall@{ms}ms": c.recall,
                        f"onset_f1@{ms}ms": c.f1, f"onset_tp@{ms}ms": c.tp, f"onset_fp@{ms}ms": c.fp,
                        f"onset_fn@{ms}ms": c.fn})
        out["onset_mean_abs_error_ms"] = self.mean_abs_error_ms
        out["onset_matched_pairs"] = len(self.abs_errors_s)
        return out


def score_onsets(reference, estimated, tolerances_s=TOLERANCES_S, *, merge_s: float = 0.03,
                 span_s: tuple[float, float] | None = None, optional=()) -> OnsetScores:
    """Scores detected onsets (s) against reference onsets (s) of one clip; reference clusters merged (see module).

    span_s: (start, end); onsets of either list outside it are ignored. Ground-truth scoring uses
    (0.02, duration - 0.02): a clip's first and last 20 ms hold edge artifacts (a noise bed starting at t = 0 is an
    onset) that no label describes.
    optional: onsets that may or may not be detected (e.g. the start of a rolling or engine sound): a detection left
    unmatched by the reference but within the tolerance of one of them is neither a true nor a false positive."""
    r = merge_onsets(reference, merge_s)
    e = np.sort(np.asarray(estimated, np.float64).ravel())
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(e))):
        raise EvalError("onset times must be finite")
    if span_s is not None:
        r = r[(r >= span_s[0]) & (r <= span_s[1])]
        e = e[(e >= span_s[0]) & (e <= span_s[1])]
    if not tolerances_s:
        raise EvalError("at least one onset tolerance is needed")
    opt = np.asarray(optional, np.float64).ravel()
    scores = OnsetScores()
    for tol in sorted(tolerances_s):
        pairs = match_onsets(r, e, tol)
        left = np.delete(e, [j for _, j in pairs])
        excused = len(match_onsets(opt, left, tol)) if len(opt) else 0
        scores.counts[float(tol)] = OnsetCounts(len(pairs), len(left) - excused, len(r) - len(pairs))
    scores.abs_errors_s = [float(abs(r[i] - e[j])) for i, j in pairs]
    return scores
