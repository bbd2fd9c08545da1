"""MMAudio's released pipeline on CPU, stage by stage, at the real sizes (random weights of the released shapes):
the reference's execution schedule beside foleyflow's, timed in the same run (issue 21, item 4).

    PYTHONPATH=. python benchmarks/bench_mmaudio.py --size small_16k --runs 2 --json eval/speed/mmaudio_small16k.json
    PYTHONPATH=. python benchmarks/bench_mmaudio.py --size large_44k_v2 --runs 2 --json eval/speed/mmaudio_44kv2.json
    PYTHONPATH=. python benchmarks/bench_mmaudio.py --size large_44k_v2 --tiny      # the same code path in seconds

Sizes. Every network is built from the released shapes (`../shared/fixtures/mmaudio/*shapes.json` through
foleyflow.models.mmaudio_release's converters when the fixtures are present, else foleyflow's presets, which the
tests hold to those shapes) with random weights: the generator (small_16k 157 M parameters; large_44k_v2 1.03 B),
CLIP DFN5B ViT-H/14-384 (open_clip, 987 M), Synchformer's visual branch (122 M), the mel VAE (16 kHz 172 M / 44.1 kHz
305 M with its encoder) and the vocoder: MMAudio's 16 kHz BigVGAN (112 M) or BigVGAN-v2 44.1 kHz 128-band 512x
(NVIDIA's `bigvgan` package, 122 M), as foleyflow.models.mmaudio_bundle builds them for a converted release.
`--tiny` builds the same stages at tiny widths (same code path; for tests). 8 s, 25 Euler steps, guidance 4.5.

Stages (frames are random uint8 already at 384 x 384 and 224 x 224, so resizing costs nothing in either schedule and
video decoding is not timed, see benchmarks/media_decode.py):
  clip         CLIP image features of 64 frames (8 s at 8 fps): to float, mean/std, encode_image
  synchformer  Synchformer's visual branch on 200 frames (8 s at 25 fps): 24 segments of 16 frames
  text         CLIP text features
  sampling     condition projections + 25 guided Euler steps -> normalised latents
  vae          the mel VAE's decoder;  vocoder: BigVGAN;  total: the sum
and two groups, the issue's targets: generator + VAE + vocoder (sampling + vae + vocoder, target >= 3x) and feature
extraction (clip + synchformer, target >= 1.5x). Ratio = reference median / foleyflow median (> 1: foleyflow faster).

The two schedules run on the same module objects (one float32 copy of every network):
  reference  hkchengrex/MMAudio's inference (`demo.py` with `--full_precision`), reproduced with foleyflow's modules
             (parity-tested against the reference, docs/mmaudio.md section 4): float32 everywhere; CLIP in calls of
             40 frames, Synchformer in calls of 40 segments; the prompt and the negative prompt '' encoded by two
             separate CLIP text calls; conditions projected once; every step calls the network twice (conditional,
             then unconditional) and recomputes the global-condition MLP and the time embedding on each call;
             the ConvMLP as k = 3 convolutions (nn.Conv1d); VAE decode, then the vocoder.
  foleyflow  what `foleyflow generate --bundle` runs on this CPU with its defaults (FoleyPipeline's own stages):
             the encoders and codec in float32 (CLIP in calls of 32 frames, Synchformer 40 segments), one text call
             (an empty negative prompt takes the generator's stored empty-text features), conditions and the global
             condition prepared once, both guidance branches in one batched call per step, the float32 ConvMLP as
             matrix products (docs/speed.md), and the generator in
             bfloat16 with fused SwiGLU projections where oneDNN has bf16 kernels (`--precision auto`), else float32.
             `--precision fp32` forces float32; `--options "sampler=heun,steps=10"` or `quantize=int8` times
             settings that benchmarks/closeness.py measured equal (docs/speed.md).
Both schedules sample from the same noise and features of the same frames; the script prints the relative L2 distance
of their latents and audio (float32 against float32: ~1e-6, the schedule changes the speed, not the result;
tests/test_bench_mmaudio.py holds it).

Facts of the reference's inference (hkchengrex/MMAudio at 974010a; read, not copied):
- `mmaudio/eval_utils.py` `generate`: CLIP image features in chunks of `clip_batch_size_multiplier` (40) x batch
  frames per `encode_image` call, Synchformer in chunks of `sync_batch_size_multiplier` (40) x batch segments; text
  and negative text through `feature_utils.encode_text`, one call each; `net.preprocess_conditions` once and
  `net.get_empty_conditions` (projecting the negative text's features) once; then `fm.to_data` over
  `net.ode_wrapper`; then `feature_utils.decode` (VAE) and `feature_utils.vocode`.
- `mmaudio/model/networks.py`: `ode_wrapper` calls `predict_flow` twice per step (conditions, then empty conditions)
  when cfg_strength >= 1 and combines s v_c + (1 - s) v_u; `predict_flow` reuses the projected features cached in
  `PreprocessedConditions` (clip_f, sync_f, text_f, clip_f_c, text_f_c) but recomputes `global_cond_mlp(clip_f_c +
  text_f_c)` and `t_embed(t)` on every call.
- `mmaudio/model/flow_matching.py`: Euler, x += dt * flow over linspace(0, 1, num_steps + 1).
- `demo.py`: everything under `torch.inference_mode()`; the network and `FeaturesUtils` are cast to bfloat16 unless
  `--full_precision` (no autocast); `--negative_prompt` defaults to '' and is always passed, so '' is encoded by CLIP.
  `batch_eval.py` instead wraps `generate` in `torch.amp.autocast(bfloat16)` when `amp` is set, optionally
  torch.compiles the network and features, and passes no negative text. The benchmark's reference is the float32
  `--full_precision` schedule (bf16 on a CPU without bf16 kernels is far slower, and it changes the result).
- `mmaudio/model/utils/features_utils.py`: `encode_video_with_clip` normalises with OpenAI CLIP's mean/std, then
  `encode_image(x, normalize=True)` per chunk (frames are resized and made float in `load_video`, outside);
  `encode_video_with_sync` cuts 16-frame segments at stride 8 and calls Synchformer per chunk; `encode_text` is the
  patched per-token `encode_text(tokens, normalize=True)`. `mmaudio/ext/autoencoder/autoencoder.py`: the VAE's
  weight norm is removed once at load, its encoder deleted for inference; the 44.1 kHz vocoder is NVIDIA's
  BigVGAN-v2 (`from_pretrained('nvidia/bigvgan_v2_44khz_128band_512x', use_cuda_kernel=False)`, weight norm removed),
  the 16 kHz one MMAudio's BigVGAN.

Each run times every stage of both schedules, interleaved run by run (the order alternates); one untimed warm-up of
both schedules comes first on reduced inputs (CLIP 2 frames, Synchformer one segment, one sampling step, 1 s of
decoding). Pause background training while timing (kill -STOP, then -CONT) and give --threads.

Cost (estimated from FLOP counts on the meta device: CLIP 1.0 TFLOP per frame, Synchformer 0.39 TFLOP per segment,
generator 0.057 / 0.51 TFLOP per branch and step, vocoder 0.9 / 2.5 TFLOP): one run of one schedule is about 78 TFLOP
(small_16k) or 102 TFLOP (large_44k_v2, fp32), CLIP alone 64. At 100-200 GFLOP/s (2 cores, AVX2 to AVX-512) that is
7-14 min for small_16k and 9-18 min for large_44k_v2 per schedule and run, so `--runs 2` takes about 35-70 min
(small_16k) and 45-90 min (large_44k_v2) with building and warm-up. Peak memory (weights float32 + activations):
small_16k about 9 GB; large_44k_v2 about 14 GB (generator 4.1 GB, CLIP 3.9, VAE 1.2, Synchformer and vocoder 0.5 each,
CLIP activations of a 40-frame call about 3), plus about 3 GB for the bfloat16 generator copy on a CPU with bf16
kernels (2.1 GB of weights and 0.9 GB of fused SwiGLU weights). The script prints its peak RSS.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_summary  # noqa: E402  (benchmarks/machine.py)

SIZES = ("small_16k", "large_44k_v2")
STAGES = ("clip", "synchformer", "text", "sampling", "vae", "vocoder", "total")
GROUPS = {"generator + VAE + vocoder": ("sampling", "vae", "vocoder"),
          "feature extraction (clip + synchformer)": ("clip", "synchformer")}
TARGETS = {"generator + VAE + vocoder": 3.0, "feature extraction (clip + synchformer)": 1.5}
SCHEDULES = ("reference", "foleyflow")
PROMPT = "a dog barks twice, then a door closes"
REFERENCE_CLIP_FRAMES_PER_CALL = 40    # mmaudio/eval_utils.py generate: clip_batch_size_multiplier 40 x batch 1
REFERENCE_SYNC_SEGMENTS_PER_CALL = 40  # sync_batch_size_multiplier 40 x batch 1

# DFN5B-CLIP-ViT-H-14-384's open_clip config (as in its open_clip_config.json: ViT-H-14-378-quickgelu)
DFN5B_CONFIG = {"embed_dim": 1024, "quick_gelu": True,
                "vision_cfg": {"image_size": 378, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}
# NVIDIA's bigvgan_v2_44khz_128band_512x config.json: the keys that shape the network
BIGVGAN_V2_44K_CONFIG = {
    "resblock": "1", "num_mels": 128, "upsample_rates": [8, 4, 2, 2, 2, 2],
    "upsample_kernel_sizes": [16, 8, 4, 4, 4, 4], "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "use_tanh_at_final": False,
    "use_bias_at_final": False, "activation": "snakebeta", "snake_logscale": True, "sampling_rate": 44100,
    "hop_size": 512,
}
TINY_CLIP = {"embed_dim": 16, "quick_gelu": True,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1}}


def shared_fixtures() -> Path | None:
    """../shared/fixtures/mmaudio (or $FOLEYFLOW_SHARED/fixtures/mmaudio) if present."""
    path = Path(os.environ.get("FOLEYFLOW_SHARED", ROOT.parent / "shared")) / "fixtures" / "mmaudio"
    return path if (path / "mmaudio_released_configs.json").is_file() else None


def released_configs(size: str, tiny: bool = False) -> dict:
    """{"generator": GeneratorConfig, "vae": VAEConfig, "synchformer": MotionFormerConfig, "vocoder": dict, "clip":
    open_clip model_cfg, "source": str} of `size`: from the released shapes when the fixtures are present (the
    converters check every key), else foleyflow's presets; `tiny`: the same layout at tiny widths."""
    from foleyflow.models import mmaudio_release as R
    from foleyflow.models.bigvgan_io import BIGVGAN_16K_CONFIG
    from foleyflow.models.generator import GeneratorConfig
    from foleyflow.models.motionformer import MotionFormerConfig
    from foleyflow.models.vae import PRESETS, VAEConfig

    if size not in SIZES:
        raise SystemExit(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    is44 = size.endswith("44k_v2")
    vocoder = dict(BIGVGAN_V2_44K_CONFIG if is44 else BIGVGAN_16K_CONFIG)
    if tiny:
        gen = dataclasses.replace(GeneratorConfig.preset(size), visual_dim=TINY_CLIP["embed_dim"], sync_dim=32,
                                  text_dim=TINY_CLIP["text_cfg"]["width"], hidden_dim=64, num_heads=2,
                                  num_joint_blocks=2, num_audio_blocks=1)
        vae = VAEConfig("44k", 128, 40, 32) if is44 else PRESETS["tiny_16k"]
        vocoder.update(upsample_initial_channel=64, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]])
        return {"generator": gen, "vae": vae, "synchformer": MotionFormerConfig(width=32, depth=1, num_heads=2),
                "vocoder": vocoder, "clip": TINY_CLIP, "source": "tiny widths"}
    fixtures = shared_fixtures()
    if fixtures is None:
        return {"generator": GeneratorConfig.preset(size), "vae": PRESETS["mmaudio_44k" if is44 else "mmaudio_16k"],
                "synchformer": MotionFormerConfig(), "vocoder": vocoder, "clip": DFN5B_CONFIG,
                "source": "foleyflow's presets (fixtures not found)"}
    released = json.loads((fixtures / "mmaudio_released_configs.json").read_text())[size]["state_dict_shapes"]
    ext = json.loads((fixtures / "mmaudio_released_ext_shapes.json").read_text())
    meta = lambda shapes: {k: torch.empty(s, device="meta") for k, s in shapes.items()}  # noqa: E731
    return {"generator": R.convert_generator(meta(released))[0],
            "vae": R.convert_vae(meta(ext["vae_44k" if is44 else "vae_16k"]))[0],
            "synchformer": R.convert_synchformer(meta(ext["synchformer"]))[0], "vocoder": vocoder,
            "clip": DFN5B_CONFIG, "source": f"released shapes ({fixtures})"}


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """Inference mode for a randomly initialised stage (speed does not depend on the weights' values)."""
    return module.eval().requires_grad_(False)


def build_pipeline(precision: str = "auto", size: str = "small_16k", *, tiny: bool = False,
                   quantize: str | None = None):
    """A FoleyPipeline over the released stages of `size` with random weights (the objects load_release builds). The
    generator's zero-initialised tensors are re-drawn so no path is skipped; its empty-text features are CLIP's
    features of '' (as in a release), so an empty negative prompt gives the same features on both schedules."""
    from foleyflow.models import clip_open
    from foleyflow.models.adapters import SynchformerAdapter, SynchformerAdapterConfig
    from foleyflow.models.bigvgan_io import BigVGANDecoder
    from foleyflow.models.generator import Generator
    from foleyflow.models.mmaudio_bundle import MMAUDIO_DEFAULTS, ReleaseTextEncoder
    from foleyflow.models.motionformer import MotionFormer
    from foleyflow.models.vae import build_vae
    from foleyflow.pipeline import FoleyPipeline

    cfgs = released_configs(size, tiny)
    torch.manual_seed(0)
    gen = Generator(cfgs["generator"])
    with torch.no_grad():
        for p in gen.zero_initialised():
            p.normal_(0.0, 0.02)
    c = gen.cfg.latent_channels
    gen.set_latent_stats(torch.zeros(c), torch.ones(c))
    clip = frozen(clip_open.build_clip(cfgs["clip"]))
    semantic = clip_open.image_features(clip, cfgs["clip"])
    motion = frozen(MotionFormer(cfgs["synchformer"]))
    sync = SynchformerAdapter(motion, SynchformerAdapterConfig(dim=motion.cfg.width), {"impl": "mmaudio_synchformer"})
    for stage in (semantic, sync):
        stage.frames_as_mmaudio = True
    text = ReleaseTextEncoder(clip_open.ClipText(clip)).eval()
    with torch.inference_mode():
        empty = text.encode([""]).tokens[0]
    with torch.no_grad():
        gen.set_empty_text(empty.clone())
    frozen(gen)
    vae = frozen(build_vae(cfgs["vae"]))
    vocoder = frozen(BigVGANDecoder(cfgs["vocoder"]))
    pipe = FoleyPipeline(gen, vae, vocoder, semantic, sync, text.cfg, text_encoder=text, precision=precision,
                         quantize=quantize, name=f"mmaudio-{size}-random{'-tiny' if tiny else ''}",
                         defaults=dict(MMAUDIO_DEFAULTS))
    pipe.shapes_source = cfgs["source"]
    return pipe


# ------------------------------------------------------------------------------------------------ the schedules
@contextlib.contextmanager
def convolution_mlp(net: torch.nn.Module):
    """The ConvMLP as the reference runs it, k = 3 convolutions (nn.Conv1d), instead of foleyflow's float32 matrix
    products (foleyflow.nn.layers.ConvSwiGLU.gemm) while the block runs; the same module objects and weights."""
    from foleyflow.nn.layers import ConvSwiGLU

    mods = [m for m in net.modules() if isinstance(m, ConvSwiGLU)]
    before = [dict(m.__dict__) for m in mods]
    for m in mods:
        m.gemm = False
    try:
        yield
    finally:
        for m, old in zip(mods, before):
            if "gemm" in old:
                m.gemm = old["gemm"]
            else:
                del m.gemm      # back to the class default


def reference_text(text_encoder, prompt: str) -> tuple:
    """The prompt's and the negative prompt's text tokens, as demo.py encodes them: two calls, the negative ''."""
    return text_encoder.encode([prompt]).tokens, text_encoder.encode([""]).tokens


def reference_sample(net, visual, sync, text: tuple, x0, duration_s: float, steps: int, cfg_scale: float):
    """Euler sampling as MMAudio's code runs it (module docstring): two calls a step, the global condition's MLP on
    each, the ConvMLP as convolutions; text = reference_text(...)."""
    from foleyflow.flow.samplers import euler, uniform_grid

    text, negative = text
    with convolution_mlp(net), torch.inference_mode():
        cond = net.prepare_conditions(visual, sync, text, duration_s=duration_s)
        empty = net.empty_conditions(x0.shape[0], text=negative, duration_s=duration_s)
        pooled = [net.clip_cond_proj(c.visual.mean(dim=1)) + net.text_cond_proj(c.text.mean(dim=1))
                  for c in (cond, empty)]

        def predict_flow(x, t, c, pooled_c):   # the global condition's MLP on every call, as the reference does
            c = dataclasses.replace(c, global_cond=net.global_cond_mlp(pooled_c))
            return net.velocity(x, t * torch.ones(len(x)), c)

        def ode(x, t):
            if cfg_scale < 1.0:
                return predict_flow(x, t, cond, pooled[0])
            return cfg_scale * predict_flow(x, t, cond, pooled[0]) + (1 - cfg_scale) * predict_flow(
                x, t, empty, pooled[1])

        return euler(ode, x0, uniform_grid(steps))


class Reference:
    """MMAudio's inference schedule (module docstring) over the pipeline's float32 modules."""
    name = "reference"

    def __init__(self, pipe, steps: int, cfg_scale: float):
        from foleyflow.models.adapters import ClipFrameAdapter, SynchformerAdapter

        self.pipe, self.steps, self.cfg_scale = pipe, steps, cfg_scale
        self.clip = ClipFrameAdapter(pipe.semantic.image_model, dataclasses.replace(
            pipe.semantic.cfg, frames_per_batch=REFERENCE_CLIP_FRAMES_PER_CALL))
        self.sync = SynchformerAdapter(pipe.sync.segment_model, dataclasses.replace(
            pipe.sync.cfg, segments_per_batch=REFERENCE_SYNC_SEGMENTS_PER_CALL))

    def text(self, prompt: str):
        return reference_text(self.pipe.text_encoder, prompt)

    def sample(self, visual, sync, text, x0, duration_s: float, steps: int | None = None) -> torch.Tensor:
        return reference_sample(self.pipe.generator, visual, sync, text, x0, duration_s, steps or self.steps,
                                self.cfg_scale)

    def vae(self, z):
        return self.pipe.vae.decode(z)

    def vocoder(self, mel):
        return self.pipe.vocoder(mel)


class Foleyflow:
    """FoleyPipeline's own stages, as `foleyflow generate --bundle` runs them (module docstring)."""
    name = "foleyflow"

    def __init__(self, pipe, opts):
        self.pipe, self.opts = pipe, opts
        self.clip, self.sync = pipe.semantic, pipe.sync

    def text(self, prompt: str):
        self.pipe.negative_features(self.opts.negative)
        return self.pipe.text_features(prompt)

    def sample(self, visual, sync, text, x0, duration_s: float, steps: int | None = None) -> torch.Tensor:
        from foleyflow.models.generator import Conditions
        from foleyflow.pipeline import latents_of

        opts = self.opts if steps is None else self.opts.replace(steps=steps)
        return latents_of(self.pipe.sample(Conditions(visual, sync, text, duration_s), opts, x0=x0))

    def vae(self, z):
        from foleyflow.models.vae import decode_channels

        return decode_channels(self.pipe.vae, z)

    def vocoder(self, mel):
        from foleyflow.models.vocoder import vocode_channels

        return vocode_channels(self.pipe.vocoder, mel)


def inputs(pipe, duration_s: float, seed: int = 0) -> dict:
    """Random uint8 frames at the encoders' sizes and the starting noise (B = 1)."""
    g = torch.Generator().manual_seed(seed)
    n8, n25 = int(duration_s * pipe.semantic.fps), int(duration_s * pipe.sync.fps)
    s8, s25 = pipe.semantic.cfg.image_size, pipe.sync.cfg.image_size
    latent_len = pipe.generator.cfg.seq_lengths(duration_s)[0]
    return {"frames8": torch.randint(0, 256, (1, n8, 3, s8, s8), generator=g, dtype=torch.uint8),
            "frames25": torch.randint(0, 256, (1, n25, 3, s25, s25), generator=g, dtype=torch.uint8),
            "x0": torch.randn(1, latent_len, pipe.generator.cfg.latent_channels, generator=g),
            "duration_s": float(duration_s)}


def run(sched, inp: dict, *, steps: int | None = None) -> tuple[dict, dict]:
    """Every stage of one schedule, in order -> ({stage: seconds}, {"visual", "latents", "audio"})."""
    net, times = sched.pipe.generator, {}
    _, _, sync_len = net.cfg.seq_lengths(inp["duration_s"])

    def timed(stage, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times[stage] = time.perf_counter() - t0
        return out

    with torch.inference_mode():
        visual = timed("clip", sched.clip, inp["frames8"])
        sync = timed("synchformer", sched.sync, inp["frames25"])[:, :sync_len]
        text = timed("text", sched.text, PROMPT)
    x1 = timed("sampling", sched.sample, visual, sync, text, inp["x0"], inp["duration_s"], steps)
    with torch.inference_mode():
        z = net.unnormalize(x1.float()).transpose(1, 2)   # (1, C, N)
        mel = timed("vae", sched.vae, z)
        wav = timed("vocoder", sched.vocoder, mel)
    times["total"] = sum(times.values())
    return times, {"visual": visual, "latents": x1.float(), "audio": wav.float().reshape(-1)}


def warm_up(sched, inp: dict) -> None:
    """One untimed pass on reduced inputs: CLIP on 2 frames, Synchformer on one segment, the text, one sampling step
    at the real shapes, and about 1 s of decoding."""
    net = sched.pipe.generator
    _, nv, ns = net.cfg.seq_lengths(inp["duration_s"])
    with torch.inference_mode():
        sched.clip(inp["frames8"][:, :2])
        sched.sync(inp["frames25"][:, :16])
        text = sched.text(PROMPT)
    g = torch.Generator().manual_seed(1)
    visual = torch.randn(1, nv, net.cfg.visual_dim, generator=g)
    sync = torch.randn(1, ns, net.cfg.sync_dim, generator=g)
    x1 = sched.sample(visual, sync, text, inp["x0"], inp["duration_s"], steps=1)
    with torch.inference_mode():
        z = net.unnormalize(x1.float()).transpose(1, 2)[..., : max(2, round(net.cfg.latent_fps))]
        sched.vocoder(sched.vae(z))


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20   # Linux: KiB


def summarise(times: dict[str, list[dict]]) -> dict:
    """{"median": {schedule: {stage or group: s}}, "ratio": {stage or group: reference / foleyflow}}."""
    med = {}
    for s, rows in times.items():
        med[s] = {k: statistics.median(r[k] for r in rows) for k in STAGES}
        med[s].update({g: statistics.median(sum(r[k] for k in ks) for r in rows) for g, ks in GROUPS.items()})
    ratio = {k: med["reference"][k] / max(med["foleyflow"][k], 1e-12) for k in med["reference"]}
    return {"median": med, "ratio": ratio}


def table(summary: dict, labels: dict[str, str]) -> str:
    """The markdown table: stage, reference median s, foleyflow median s, ratio."""
    med, ratio = summary["median"], summary["ratio"]
    lines = ["| stage | reference median s | foleyflow median s | ratio (reference / foleyflow) |",
             "|---|---:|---:|---:|"]
    for k in (*STAGES, *GROUPS):
        target = f" (target >= {TARGETS[k]:g})" if k in TARGETS else ""
        lines.append(f"| {labels.get(k, k)} | {med['reference'][k]:.3f} | {med['foleyflow'][k]:.3f} | "
                     f"{ratio[k]:.2f}{target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="small_16k", choices=SIZES)
    ap.add_argument("--tiny", action="store_true", help="tiny widths, same code path (seconds; for tests)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each schedule (median reported)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of audio (MMAudio's window: 8)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=4.5)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="foleyflow's generator precision (auto: bf16 where the CPU has bf16 kernels, as generate)")
    ap.add_argument("--options", default="", metavar="K=V,...", help="foleyflow's generation options, e.g. "
                    "'sampler=heun,steps=10' or 'quantize=int8' (settings measured equal by closeness.py)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write every time and the summary to OUT")
    args = ap.parse_args(argv)
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from closeness import parse_candidate   # benchmarks/closeness.py: 'k=v,...' -> (options, quantize)
    from foleyflow.pipeline import bf16_supported

    values, quantize = parse_candidate(args.options)
    cpu = (f"CPU: {cpu_summary()}; native bf16 units: {'yes' if bf16_supported(torch.device('cpu')) else 'no'}; "
           f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(cpu, flush=True)
    t0 = time.perf_counter()
    pipe = build_pipeline(args.precision, args.size, tiny=args.tiny, quantize=quantize)
    opts = pipe.options(steps=args.steps, cfg_scale=args.cfg, seed=0).replace(**values)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in (
        ("generator", pipe.generator), ("clip", pipe.semantic), ("synchformer", pipe.sync), ("vae", pipe.vae),
        ("vocoder", pipe.vocoder))}
    print(f"built {args.size}{' (tiny)' if args.tiny else ''} with random weights from "
          f"{pipe.shapes_source} in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in params.items())
          + f"; {args.duration:g} s, reference: {args.steps} Euler steps fp32, foleyflow: {opts.steps} {opts.sampler} "
          f"steps {pipe.precision}{' int8' if quantize else ''}; guidance {args.cfg:g}; warm-up, then {args.runs} "
          f"interleaved runs; load average {os.getloadavg()[0]:.1f}", flush=True)
    scheds = {"reference": Reference(pipe, args.steps, args.cfg), "foleyflow": Foleyflow(pipe, opts)}
    inp = inputs(pipe, args.duration)
    for s in scheds.values():
        warm_up(s, inp)
    times: dict[str, list[dict]] = {s: [] for s in SCHEDULES}
    outs = {}
    for r in range(args.runs):
        for name in (SCHEDULES if r % 2 == 0 else SCHEDULES[::-1]):
            t, outs[name] = run(scheds[name], inp)
            times[name].append(t)
            print(f"  run {r + 1} {name:<9}: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items())
                  + f" s; load {os.getloadavg()[0]:.1f}", flush=True)
    summary = summarise(times)
    closeness = {k: rel_l2(outs["foleyflow"][k], outs["reference"][k]) for k in ("visual", "latents", "audio")}
    n8, n25 = inp["frames8"].shape[1], inp["frames25"].shape[1]
    labels = {"clip": f"clip ({n8} frames)", "synchformer": f"synchformer ({n25} frames)",
              "sampling": f"sampling ({args.steps} steps, guidance {args.cfg:g})"}
    print(f"\n{cpu}\n{args.size}{' (tiny)' if args.tiny else ''}, {args.duration:g} s, median of {args.runs} runs; "
          f"foleyflow: generator {pipe.precision}{', ' + args.options if args.options else ''}\n")
    print(table(summary, labels))
    print(f"\nrelative L2, foleyflow vs reference: CLIP features {closeness['visual']:.2e}, latents "
          f"{closeness['latents']:.2e}, audio {closeness['audio']:.2e}; peak RSS {peak_rss_gb():.1f} GB")
    if args.json:
        from foleyflow.fileio import atomic_write_text

        record = {"cpu": cpu, "size": args.size, "tiny": args.tiny, "duration_s": args.duration,
                  "steps": args.steps, "cfg_scale": args.cfg, "runs": args.runs, "threads": torch.get_num_threads(),
                  "foleyflow": {"precision": pipe.precision, "quantize": quantize, "options": dataclasses.asdict(opts)},
                  "parameters": params, "stages": list(STAGES), "groups": {g: list(k) for g, k in GROUPS.items()},
                  "targets": TARGETS, "times": times, **summary, "rel_l2": closeness,
                  "peak_rss_gb": peak_rss_gb()}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
