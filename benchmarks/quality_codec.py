"""Codec quality against the original waveform: round trip (VAE + vocoder) vs. vocoder alone on the true mel (upper
bound) vs. Griffin-Lim on the true mel (baseline), side by side on the same clips.

    python benchmarks/quality_codec.py --vae VAE.safetensors --vocoder VOC.safetensors [--source DATA] [--clips 16]

`--source`: a folder of wavs, a JSONL manifest with `audio` (FoleyWorld test split: add --split test), or
`synthetic` (procedural stereo events, seed --seed, disjoint from training seeds). Figures (lower is better except
onset F1), mean over clips:
  stft      multi-resolution STFT distance (spectral convergence + log-magnitude L1, 4 resolutions)
  mel_l1    L1 of log10 mels (MMAudio 16 kHz front-end)
  onset_f1  F1 of spectral-flux onsets within +-25 ms, the original's onsets as reference
  ild_db    mean |ILD error| (dB) over frames louder than -50 dB
  itd_us    |ITD error| (microseconds) from GCC-PHAT over each clip (lags up to 1 ms)
The onset and spatial measures here are simple self-contained versions; foleyflow.eval holds the reference ones.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def onsets(wav: np.ndarray, sr: int, hop: int = 128) -> np.ndarray:
    """Onset times (s) of a mono signal: half-wave rectified log-spectral flux, adaptive threshold, 50 ms apart."""
    n_fft = 512
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wav, (n_fft // 2, n_fft // 2)), n_fft)[::hop]
    spec = np.log1p(100 * np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)))
    flux = np.maximum(np.diff(spec, axis=0), 0).sum(1)
    if flux.max() <= 0:
        return np.zeros(0)
    thr = np.median(flux) + 0.3 * (flux.max() - np.median(flux))
    peaks, last = [], -1e9
    for i in range(1, len(flux) - 1):
        if flux[i] > thr and flux[i] >= flux[i - 1] and flux[i] >= flux[i + 1] and (i - last) * hop / sr > 0.05:
            peaks.append(i)
            last = i
    return (np.array(peaks) + 1) * hop / sr


def onset_f1(ref: np.ndarray, est: np.ndarray, tol: float = 0.025) -> float:
    if len(ref) == 0 and len(est) == 0:
        return 1.0
    used, hits = set(), 0
    for r in ref:
        cands = [(abs(e - r), j) for j, e in enumerate(est) if j not in used and abs(e - r) <= tol]
        if cands:
            used.add(min(cands)[1])
            hits += 1
    p = hits / max(len(est), 1)
    r = hits / max(len(ref), 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ild_frames(wav: np.ndarray, n: int = 1024, hop: int = 256) -> tuple[np.ndarray, np.ndarray]:
    fr = np.lib.stride_tricks.sliding_window_view(wav, n, axis=1)[:, ::hop]
    e = (fr ** 2).mean(-1) + 1e-10
    return 10 * np.log10(e[0] / e[1]), 10 * np.log10(e.mean(0))


def itd_seconds(wav: np.ndarray, sr: int, max_lag_s: float = 0.001) -> float:
    n = 2 * wav.shape[1]
    a, b = np.fft.rfft(wav[0], n), np.fft.rfft(wav[1], n)
    cross = a * np.conj(b)
    cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), n)
    lag = int(max_lag_s * sr)
    window = np.concatenate([cc[-lag:], cc[:lag + 1]])
    return (int(np.argmax(window)) - lag) / sr


def measures(out: np.ndarray, ref: np.ndarray, sr: int) -> dict[str, float]:
    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.train.codec_losses import multi_resolution_stft_loss

    o, r = torch.from_numpy(out), torch.from_numpy(ref)
    stft = multi_resolution_stft_loss(o, r)
    mel_l1 = (log_mel_spectrogram(o, "16k") - log_mel_spectrogram(r, "16k")).abs().mean().item()
    f1 = onset_f1(onsets(ref.mean(0), sr), onsets(out.mean(0), sr))
    ild_o, _ = ild_frames(out)
    ild_r, level = ild_frames(ref)
    loud = level > level.max() - 50
    ild = float(np.abs(ild_o - ild_r)[loud].mean()) if loud.any() else 0.0
    itd = abs(itd_seconds(out, sr) - itd_seconds(ref, sr)) * 1e6
    return {"stft": (stft["stft/sc"] + stft["stft/mag"]).item(), "mel_l1": mel_l1, "onset_f1": f1,
            "ild_db": ild, "itd_us": itd}


def main() -> None:
    from foleyflow.audio import griffin_lim, log_mel_spectrogram
    from foleyflow.data.audio_clips import build_audio_dataset
    from foleyflow.models.vae import decode_channels, encode_channels, load_vae, num_latent_frames
    from foleyflow.models.vocoder import load_vocoder, vocode_channels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True)
    p.add_argument("--vocoder", required=True)
    p.add_argument("--source", default="synthetic")
    p.add_argument("--split", default=None)
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vae, voc = load_vae(args.vae), load_vocoder(args.vocoder)
    sr = 16000
    n = num_latent_frames(int(args.seconds * sr), vae.cfg) * 512
    ds = build_audio_dataset(args.source, sample_rate=sr, num_samples=n, seed=args.seed, split=args.split,
                             synthetic_items=args.clips)
    rows: dict[str, list[dict]] = {"round trip (VAE + vocoder)": [], "vocoder on true mel": [],
                                   "Griffin-Lim on true mel": []}
    with torch.inference_mode():
        for i in range(min(args.clips, len(ds))):
            wav = ds[i][None]  # (1, 2, n)
            mel = log_mel_spectrogram(wav, "16k")
            outs = [vocode_channels(voc, decode_channels(vae, encode_channels(vae, mel).mean)),
                    vocode_channels(voc, mel), griffin_lim(mel, "16k", n_iter=args.gl_iters, seed=i)]
            ref = wav[0].numpy().astype(np.float64)
            for key, out in zip(rows, outs):
                rows[key].append(measures(out[0].numpy().astype(np.float64), ref, sr))
    print(f"codec quality on {min(args.clips, len(ds))} clips of {n / sr:g} s from {args.source} (seed {args.seed});"
          f" VAE {args.vae}, vocoder {args.vocoder}, Griffin-Lim {args.gl_iters} iterations")
    keys = list(next(iter(rows.values()))[0])
    print("| system | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, vals in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([v[k] for v in vals]):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
