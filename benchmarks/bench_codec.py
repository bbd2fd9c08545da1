"""Speed of the audio codec round trip (mel -> VAE encode -> VAE decode -> vocoder) for 16 kHz stereo on CPU.

    python benchmarks/bench_codec.py [--seconds 8] [--runs 5] [--threads 1]
    python benchmarks/bench_codec.py --random [--vae tiny_16k] [--vocoder small_16k]    # presets, random weights

Prints the median wall time of each stage over `--runs` runs (after one warm-up) and each stage's speed as a multiple
of real time; `round_trip` (mel + encode + decode + vocoder) is the codec's real-time factor. By default the bundled
trained weights (`foleyflow.models.codec.load_bundled_codec`, fp16-stored, computing in fp32); other checkpoints
with --vae-ckpt / --vocoder-ckpt, or random weights of a preset with --random. Input: 8 s of 16 kHz stereo noise.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.models import vae as V
    from foleyflow.models import vocoder as W

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", default="tiny_16k", choices=sorted(V.PRESETS))
    p.add_argument("--vocoder", default="small_16k", choices=sorted(W.PRESETS))
    p.add_argument("--vae-ckpt")
    p.add_argument("--vocoder-ckpt")
    p.add_argument("--random", action="store_true", help="presets with random weights instead of the bundled codec")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not args.random:
        from foleyflow.models.codec import bundled_codec_paths

        bundled_vae, bundled_voc = bundled_codec_paths()
        args.vae_ckpt, args.vocoder_ckpt = args.vae_ckpt or bundled_vae, args.vocoder_ckpt or bundled_voc
    vae = V.load_vae(args.vae_ckpt) if args.vae_ckpt else V.build_vae(args.vae).eval()
    voc = W.load_vocoder(args.vocoder_ckpt) if args.vocoder_ckpt else W.build_vocoder(args.vocoder).eval()
    sr = 16000
    n = int(args.seconds * sr)
    n_pad = V.num_latent_frames(n, vae.cfg) * V.samples_per_latent(vae.cfg)
    wav = torch.zeros(1, 2, n_pad)
    wav[..., :n] = 0.1 * torch.randn(1, 2, n)

    stages = {"mel": [], "vae_encode": [], "vae_decode": [], "vocoder": [], "round_trip": []}
    cpu_times: list[float] = []
    with torch.inference_mode():
        for run in range(args.runs + 1):
            c0 = time.process_time()
            t0 = time.perf_counter()
            mel = log_mel_spectrogram(wav, vae.cfg.mel_setting)
            t1 = time.perf_counter()
            z = V.encode_channels(vae, mel).mean
            t2 = time.perf_counter()
            mel_rec = V.decode_channels(vae, z)
            t3 = time.perf_counter()
            out = W.vocode_channels(voc, mel_rec)[..., :n]
            t4 = time.perf_counter()
            cpu = time.process_time() - c0
            if run == 0:
                continue  # warm-up
            cpu_times.append(cpu)
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                stages[key].append(dt)
    assert out.shape == (1, 2, n)
    nparams = lambda m: sum(x.numel() for x in m.parameters()) / 1e6  # noqa: E731
    import os

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"codec round trip, {args.seconds:g} s of 16 kHz stereo, {args.threads} threads, median of {args.runs} runs"
          f" (load average {load} on {os.cpu_count()} CPUs)")
    print(f"VAE {args.vae_ckpt or args.vae + ' (random)'} ({nparams(vae):.2f} M params), "
          f"vocoder {args.vocoder_ckpt or args.vocoder + ' (random)'} ({nparams(voc):.2f} M params)")
    for key, times in stages.items():
        med = statistics.median(times)
        print(f"  {key:11s} {med * 1000:8.1f} ms   {args.seconds / med:7.1f}x real time")
    cpu = statistics.median(cpu_times)
    print(f"  round trip CPU time (process, all threads) {cpu * 1000:.1f} ms: {args.seconds / cpu:.1f}x real time "
          "per CPU second (less sensitive to other jobs than wall time)")


if __name__ == "__main__":
    main()
