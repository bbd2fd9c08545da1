"""MMAudio's released pipeline in foleyflow, stage by stage, at the real sizes (random weights of the released shapes).

    /work/main/.venv/bin/python benchmarks/bench_mmaudio.py                       # small_16k, 8 s, 25 steps, 3 runs
    /work/main/.venv/bin/python benchmarks/bench_mmaudio.py --runs 5 --precision fp32 --threads 2

What is timed (each the median and min of --runs, after one warm-up run), through the same objects
`foleyflow generate --bundle` runs for a converted release (foleyflow.models.mmaudio_bundle, FoleyPipeline):
  clip        CLIP DFN5B ViT-H/14 image features of 64 frames (8 s at 8 fps), preprocessing (384 x 384 stretch) included
  synchformer Synchformer's visual branch on 200 frames (8 s at 25 fps), preprocessing included
  text        CLIP text features of one prompt (77 tokens)
  sampling    the generator (small_16k), 25 Euler steps, guidance 4.5 (both branches batched), fp32 or bf16
  vae         the 16 kHz mel VAE decoder
  vocoder     MMAudio's 16 kHz BigVGAN
  total       the sum
Frames are random uint8 at 384 x 384 and 224 x 224 (video decoding is not timed: see benchmarks/media_decode.py).
Prints the CPU model, its relevant flags and whether oneDNN has bf16 kernels (../shared/docs/design.md asks
for them).
Pause background training while timing (kill -STOP, then -CONT). Memory: about 6 GB (CLIP ViT-H in float32).
The reference (hkchengrex/MMAudio) is not installed here; its side-by-side timing is not part of this script.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# DFN5B-CLIP-ViT-H-14-384's open_clip config (as in its open_clip_config.json: ViT-H-14-378-quickgelu)
DFN5B_CONFIG = {"embed_dim": 1024, "quick_gelu": True,
                "vision_cfg": {"image_size": 378, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_report() -> str:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    from foleyflow.pipeline import bf16_supported

    have = " ".join(f for f in FLAGS if f in flags) or "none of " + " ".join(FLAGS)
    return (f"CPU: {model}; flags: {have}; oneDNN bf16: {bf16_supported(torch.device('cpu'))}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """Inference mode for a randomly initialised stage (speed does not depend on the weights' values)."""
    return module.eval().requires_grad_(False)


def build_pipeline(precision: str):
    """A FoleyPipeline over the released small_16k stages with random weights (the objects load_release builds)."""
    from foleyflow.models import clip_open
    from foleyflow.models.adapters import SynchformerAdapter, SynchformerAdapterConfig
    from foleyflow.models.bigvgan_io import BIGVGAN_16K_CONFIG, BigVGANDecoder
    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.mmaudio_bundle import ReleaseTextEncoder
    from foleyflow.models.motionformer import MotionFormer, MotionFormerConfig
    from foleyflow.models.vae import build_vae
    from foleyflow.pipeline import FoleyPipeline

    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.preset("small_16k"))
    with torch.no_grad():   # adaLN and output layers start at zero: re-drawn so no path is skipped
        for p in gen.zero_initialised():
            p.normal_(0.0, 0.02)
    gen.set_latent_stats(torch.zeros(gen.cfg.latent_channels), torch.ones(gen.cfg.latent_channels))
    clip = frozen(clip_open.build_clip(DFN5B_CONFIG))
    semantic = clip_open.image_features(clip, DFN5B_CONFIG)
    motion = frozen(MotionFormer(MotionFormerConfig()))
    sync = SynchformerAdapter(motion, SynchformerAdapterConfig(dim=motion.cfg.width), {"impl": "mmaudio_synchformer"})
    for stage in (semantic, sync):
        stage.frames_as_mmaudio = True
    text = ReleaseTextEncoder(clip_open.ClipText(clip)).eval()
    vae = frozen(build_vae("mmaudio_16k"))
    vocoder = frozen(BigVGANDecoder(BIGVGAN_16K_CONFIG))
    return FoleyPipeline(gen, vae, vocoder, semantic, sync, text.cfg, text_encoder=text, precision=precision,
                         name="mmaudio-small_16k-random", defaults={"steps": 25, "cfg_scale": 4.5})


def stages(pipe, duration_s: float, steps: int, cfg_scale: float) -> dict:
    """One run of every stage; returns {stage: seconds}."""
    from foleyflow.models.generator import Conditions
    from foleyflow.models.vae import decode_channels
    from foleyflow.models.vocoder import vocode_channels

    g = torch.Generator().manual_seed(0)
    n8, n25 = int(duration_s * 8), int(duration_s * 25)
    frames8 = torch.randint(0, 256, (1, n8, 3, 384, 384), generator=g, dtype=torch.uint8)
    frames25 = torch.randint(0, 256, (1, n25, 3, 224, 224), generator=g, dtype=torch.uint8)
    out = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        visual = pipe.semantic(frames8)
        out["clip"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync = pipe.sync(frames25)
        out["synchformer"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        text = pipe.text_features("a dog barks twice, then a door closes")
        out["text"] = time.perf_counter() - t0
    c = Conditions(visual, sync, text, duration_s)
    opts = pipe.options(steps=steps, cfg_scale=cfg_scale, seed=0)
    t0 = time.perf_counter()
    x1 = pipe.sample(c, opts)
    out["sampling"] = time.perf_counter() - t0
    with torch.inference_mode():
        z = pipe.generator.unnormalize(x1.float()).transpose(1, 2)
        t0 = time.perf_counter()
        mel = decode_channels(pipe.vae, z)
        out["vae"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        wav = vocode_channels(pipe.vocoder, mel)
        out["vocoder"] = time.perf_counter() - t0
    assert wav.shape[-1] >= round(duration_s * pipe.sample_rate) and torch.isfinite(wav).all()
    out["total"] = sum(out.values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per stage (median and min reported)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of audio (MMAudio's window: 8)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=4.5)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="the generator's (encoders and codec run in float32, as in foleyflow generate)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(cpu_report())
    t0 = time.perf_counter()
    pipe = build_pipeline(args.precision)
    print(f"built the released small_16k stages with random weights in {time.perf_counter() - t0:.1f} s "
          f"(generator precision {pipe.precision}); {args.duration:g} s, {args.steps} Euler steps, guidance "
          f"{args.cfg:g}; warm-up run, then {args.runs} timed")
    stages(pipe, args.duration, args.steps, args.cfg)
    runs = [stages(pipe, args.duration, args.steps, args.cfg) for _ in range(args.runs)]
    print(f"{'stage':<12} {'median s':>9} {'min s':>9}")
    for name in runs[0]:
        vals = [r[name] for r in runs]
        print(f"{name:<12} {statistics.median(vals):>9.2f} {min(vals):>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
