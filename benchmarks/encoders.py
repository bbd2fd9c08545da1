"""Speed, shapes and sizes of the condition encoders on one 8 s, 128 x 128 clip (batch 1, CPU, fp32, no grad).

    python benchmarks/encoders.py [--repeats 3] [--threads 2] [--skip-text]

Prints, per encoder: output shape, parameter count, median wall time over --repeats runs (after one warm-up).
Random weights: the speed of a trained model is the same. Timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-text", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from foleyflow.models.adapters import ClipFrameAdapter, SynchformerAdapter
    from foleyflow.models.av_ssl import AudioEncoder, AudioEncoderConfig
    from foleyflow.models.visual import (SemanticEncoder, SemanticEncoderConfig, SyncEncoder, SyncEncoderConfig,
                                         count_parameters)

    frames8 = torch.randint(0, 256, (1, 64, 3, 128, 128), dtype=torch.uint8)
    frames25 = torch.randint(0, 256, (1, 200, 3, 128, 128), dtype=torch.uint8)
    audio = torch.randn(1, 2, 128000) * 0.1
    rows = []

    def bench(name, module, fn, params=True):
        with torch.no_grad():
            sec, out = timed(fn, args.repeats)
        n = count_parameters(module) if params and module is not None else 0
        rows.append((name, tuple(out.shape), n, sec))

    sem = SemanticEncoder(SemanticEncoderConfig()).eval()
    bench("semantic encoder (64 frames @ 8 fps)", sem, lambda: sem(frames8))
    syn = SyncEncoder(SyncEncoderConfig()).eval()
    bench("sync encoder (200 frames @ 25 fps)", syn, lambda: syn(frames25))
    aud = AudioEncoder(AudioEncoderConfig()).eval()
    bench("audio encoder, SSL only (8 s stereo)", aud, lambda: aud(audio))
    clip = ClipFrameAdapter(lambda x: torch.zeros(x.shape[0], 1024))
    bench("CLIP adapter preprocessing only (to 384 px)", None, lambda: clip.preprocess(frames8), params=False)
    sf = SynchformerAdapter(lambda x: torch.zeros(x.shape[0], 1, 8, 768))
    bench("Synchformer adapter preprocessing only (to 224 px)", None, lambda: sf.preprocess(frames25),
          params=False)

    if not args.skip_text:
        from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

        t0 = time.perf_counter()
        text = load_text_encoder(TextEncoderConfig())
        load_s = time.perf_counter() - t0
        caption = ["a red rubber ball bounces three times on a wooden floor, then rolls away"]
        cot = [{"semantic": "a red rubber ball bounces on a wooden floor and rolls away",
                "temporal": "three impacts at 1.0 s, 1.8 s and 2.3 s, each quieter, then a soft roll until 4 s",
                "aesthetic": "clean, dry, close, moderate loudness, natural",
                "spatial": "starts on the left, moves to the centre, close to the listener"}]
        bench("text encoder, caption", text.bert, lambda: text.encode(caption).tokens)
        bench("text encoder, 4-part CoT", text.bert, lambda: text.encode_cot(cot).tokens)
        print(f"text encoder load time: {load_s:.2f} s")

    print(f"{'encoder':52s} {'output shape':>18s} {'params':>10s} {'median s':>9s}")
    for name, shape, n, sec in rows:
        print(f"{name:52s} {str(shape):>18s} {n / 1e6:>9.2f}M {sec:>9.3f}")


if __name__ == "__main__":
    main()
