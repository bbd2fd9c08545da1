"""Codec quality against the original waveform on FoleyWorld test clips: round trip (VAE + vocoder) vs. vocoder alone
on the true mel (upper bound) vs. Griffin-Lim on the true mel (baseline), side by side on the same clips.

    python benchmarks/quality_codec.py --vae VAE.safetensors --vocoder VOC.safetensors \
        [--vocoder NAME=VOC2.safetensors ...] [--data /work/data/foleyworld/test] [--clips 100] [--json OUT]

Clips: the first `--clips` `*.wav` of `--data` in name order, each with its ground-truth `NAME.json` beside it
(FoleyWorld's layout), whole clips (8 s, 16 kHz stereo). Several vocoders can be compared in one run (each gives a
round-trip row and a true-mel row; the Griffin-Lim and original rows are shared). Figures (lower is better except
onset F1):
  mr_stft   multi-resolution STFT distance (spectral convergence + log-magnitude L1 at 4 resolutions,
            `foleyflow.train.codec_losses.multi_resolution_stft_loss`), mean over clips
  mel_l1    L1 of the 16 kHz log10 mels (`foleyflow.audio.log_mel_spectrogram`), mean over clips
  onset_f1  onset F1 at +-25 ms against the clip's labelled discrete events (`foleyflow.eval.truth.score_clip`:
            the `eval.onsets` detector and its scoring rules), counts summed over clips; the "original" row is the
            detector on the untouched audio (the ceiling of this measure)
  ild_db    mean |ILD error| (dB; `eval.spatial.ild_db`) over 64 ms windows where the original is within 40 dB of
            its loudest window
  itd_us    mean |ITD error| (microseconds; `eval.spatial.gcc_phat`, +-1 ms, 1/16-sample resolution) over 256 ms
            windows within 30 dB of the loudest
  pan_err   per-event pan error against the labels (`eval.truth.score_clip` with the original as pan reference)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

SR = 16000


def _windows(x: np.ndarray, win: int) -> np.ndarray:
    n = x.shape[1] // win
    return x[:, :n * win].reshape(2, n, win).transpose(1, 0, 2)  # (windows, 2, win)


def _loud(ref_windows: np.ndarray, range_db: float) -> np.ndarray:
    power = 10 * np.log10((ref_windows ** 2).mean(axis=(1, 2)) + 1e-12)
    return power > power.max() - range_db


def ild_error_db(out: np.ndarray, ref: np.ndarray, win: int = 1024, range_db: float = 40.0) -> float:
    from foleyflow.eval.spatial import ild_db

    wo, wr = _windows(out, win), _windows(ref, win)
    keep = np.flatnonzero(_loud(wr, range_db))
    return float(np.mean([abs(ild_db(wo[i]) - ild_db(wr[i])) for i in keep]))


def itd_error_us(out: np.ndarray, ref: np.ndarray, win: int = 4096, range_db: float = 30.0) -> float:
    from foleyflow.eval.spatial import gcc_phat

    wo, wr = _windows(out, win), _windows(ref, win)
    keep = np.flatnonzero(_loud(wr, range_db))
    return 1e6 * float(np.mean([abs(gcc_phat(*wo[i], SR) - gcc_phat(*wr[i], SR)) for i in keep]))


def signal_measures(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.train.codec_losses import multi_resolution_stft_loss

    o, r = torch.from_numpy(out).float(), torch.from_numpy(ref).float()
    stft = multi_resolution_stft_loss(o, r)
    mel = (log_mel_spectrogram(o, "16k") - log_mel_spectrogram(r, "16k")).abs().mean().item()
    return {"mr_stft": (stft["stft/sc"] + stft["stft/mag"]).item(), "mel_l1": mel,
            "ild_db": ild_error_db(out, ref), "itd_us": itd_error_us(out, ref)}


def parse_vocoders(specs: list[str]) -> list[tuple[str, str]]:
    out = []
    for s in specs:
        name, _, path = s.rpartition("=") if "=" in s else (Path(s).stem, "", s)
        out.append((name, path))
    return out


def main() -> None:
    from foleyflow.audio import griffin_lim, log_mel_spectrogram
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.onsets import OnsetScores
    from foleyflow.eval.truth import reference_pan_info, score_clip
    from foleyflow.events import read_events
    from foleyflow.models.vae import decode_channels, encode_channels, load_vae, num_latent_frames, samples_per_latent
    from foleyflow.models.vocoder import load_vocoder, vocode_channels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True)
    p.add_argument("--vocoder", action="append", default=[],
                   help="PATH or NAME=PATH; repeat to compare (none with --skip-baselines: the VAE's mel L1 only)")
    p.add_argument("--data", default="/work/data/foleyworld/test")
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the per-system figures here")
    p.add_argument("--skip-baselines", action="store_true",
                   help="leave out the Griffin-Lim and original rows (vocoder-independent; for a second vocoder run)")
    args = p.parse_args()
    if not args.vocoder and not args.skip_baselines:
        p.error("give at least one --vocoder (or --skip-baselines to measure the VAE alone)")
    torch.set_num_threads(args.threads)
    vae = load_vae(args.vae)
    vocoders = [(name, load_vocoder(path)) for name, path in parse_vocoders(args.vocoder)]
    wavs = sorted(Path(args.data).glob("*.wav"))[:args.clips]
    if not wavs:
        raise SystemExit(f"error: no .wav files in {args.data}")

    systems = [f"{kind} [{name}]" for name, _ in vocoders for kind in ("round trip", "vocoder on true mel")]
    if not args.skip_baselines:
        systems = ["original"] + systems + ["Griffin-Lim on true mel"]
    rows = {s: [] for s in systems}
    onsets = {s: OnsetScores() for s in systems}
    pans = {s: [] for s in systems}
    vae_mel_l1: list[float] = []
    with torch.inference_mode():
        for i, path in enumerate(wavs):
            ref, _ = read_stereo(path, SR)
            n = ref.shape[1]
            padded = num_latent_frames(n, vae.cfg) * samples_per_latent(vae.cfg)
            wav = torch.nn.functional.pad(torch.from_numpy(ref).float(), (0, padded - n))[None]
            mel = log_mel_spectrogram(wav, "16k")
            mel_rt = decode_channels(vae, encode_channels(vae, mel).mean)
            vae_mel_l1.append((mel_rt - mel)[..., :n // 256].abs().mean().item())
            print(f"\r{i + 1}/{len(wavs)} clips", end="", flush=True)
            if not systems:  # the VAE alone: no waveforms to score
                continue
            events = read_events(path.with_suffix(".json"))
            outs = {} if args.skip_baselines else {"original": ref}
            for name, voc in vocoders:
                outs[f"round trip [{name}]"] = vocode_channels(voc, mel_rt)[0, :, :n].double().numpy()
                outs[f"vocoder on true mel [{name}]"] = vocode_channels(voc, mel)[0, :, :n].double().numpy()
            if not args.skip_baselines:
                gl = griffin_lim(mel, "16k", n_iter=args.gl_iters, seed=i)
                outs["Griffin-Lim on true mel"] = gl[0, :, :n].double().numpy()
            pan_ref = reference_pan_info(ref, SR, events)
            for s, out in outs.items():
                res = score_clip(path.stem, out, SR, events, pan_reference=pan_ref)
                onsets[s] = onsets[s] + res.onsets
                pans[s] += res.pan_errors
                if s != "original":
                    rows[s].append(signal_measures(out, ref))
    print()
    if not systems:  # VAE only
        print(f"VAE {args.vae} alone on {len(wavs)} clips ({wavs[0].name} .. {wavs[-1].name}) of {args.data}: "
              f"decoded vs true mel, mel_l1 {np.mean(vae_mel_l1):.3f}")
        if args.json:
            Path(args.json).write_text(json.dumps({"clips": [w.name for w in wavs], "vae": args.vae,
                                                   "vae_mel_l1": float(np.mean(vae_mel_l1))}, indent=1))
        return
    table = {}
    for s in systems:
        fig = {k: float(np.mean([r[k] for r in rows[s]])) for k in ("mr_stft", "mel_l1")} if rows[s] else {}
        fig["onset_f1"] = onsets[s].counts[0.025].f1
        if rows[s]:
            fig.update({k: float(np.mean([r[k] for r in rows[s]])) for k in ("ild_db", "itd_us")})
        fig["pan_err"] = float(np.mean(pans[s])) if pans[s] else float("nan")
        table[s] = fig
    c = onsets[systems[0]].counts[0.025]
    print(f"codec quality on {len(wavs)} clips ({wavs[0].name} .. {wavs[-1].name}) of {args.data}, "
          f"{n / SR:g} s 16 kHz stereo; VAE {args.vae}; vocoders " +
          ", ".join(f"{name}={path}" for name, path in parse_vocoders(args.vocoder)) +
          ("" if args.skip_baselines else f"; Griffin-Lim {args.gl_iters} iterations") +
          f"; {c.tp + c.fn} labelled onsets, "
          f"{len(pans[systems[0]])} scored event pans; VAE alone (decoded vs true mel): mel_l1 "
          f"{np.mean(vae_mel_l1):.3f}")
    keys = ["mr_stft", "mel_l1", "onset_f1", "ild_db", "itd_us", "pan_err"]
    print("| system | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for s, fig in table.items():
        print(f"| {s} | " + " | ".join(f"{fig[k]:.3f}" if k in fig else "-" for k in keys) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"clips": [w.name for w in wavs], "vae": args.vae,
                                               "vae_mel_l1": float(np.mean(vae_mel_l1)),
                                               "vocoders": args.vocoder, "table": table}, indent=1))


if __name__ == "__main__":
    from foleyflow.errors import FoleyError

    try:
        main()
    except FoleyError as e:  # missing or wrong checkpoints, unreadable clips: one line, not a traceback
        raise SystemExit(f"error: {e}") from None
