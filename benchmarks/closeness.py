"""Is a faster generation setting "measured equal" to the reference? Issue 20's rule, in one run with its timings.

    PYTHONPATH=. python benchmarks/closeness.py                                  # installed default model, 4 clips
    PYTHONPATH=. python benchmarks/closeness.py --bundle DIR --clips DIR --num-clips 8 --threads 2 --json out.json
    PYTHONPATH=. python benchmarks/closeness.py --mmaudio small_16k --num-clips 2 --threads 2
    ... --candidates "sampler=heun,steps=10" "sampler=midpoint,steps=8" "quantize=int8"

The reference setting is 25-step Euler (`--ref-steps`), fp32, not quantised, at the bundle's guidance scale. For
each clip (its first window of at most the model's window) and seed s (`--seed`), the reference is sampled from
noise s and from noise s + 1; each candidate (a comma-separated list of `key=value`: GenerationOptions fields such
as `sampler`, `steps`, `cfg_scale`, plus `quantize=int8`) is sampled from noise s. A candidate is "measured equal"
when its output is as close to the reference output of the same noise as the two seeds' reference outputs are to
each other (ratio <= 1), on both distances:
  latent  ||x_candidate - x_reference|| / ||x_reference|| over the normalised latents (B, N, C)
  mel     mean |log-mel difference| in dB of the decoded audio (16 kHz, 80 mels, MMAudio's mel; every channel)
The seed row is the reference from noise s + 1 against noise s: the distance two equally good outputs have.
Time: sampling only (conditions, decoding and quantising the copy are outside; every setting of a clip is sampled
before any is decoded), the fastest of --repeats per clip, summed over the clips, after one warm-up step per setting;
`speed-up` = reference time / candidate time, measured in the same run. With --mmaudio, the reference is also run as
MMAudio's own code runs it (benchmarks/bench_mmaudio.py's Reference: two network calls a step, the ConvMLP as
convolutions; the prompt and '' through the text encoder), timed only, and `vs MMAudio` = that time / the
candidate's: issue 20's "times the reference". Pause other jobs
(kill -STOP) while timing, and give --threads.

Clips (the first --num-clips of): the *.mp4 of --clips DIR (a FoleyWorld split folder of <id>.mp4), else
examples/demo.mp4, ../shared/media/*.mp4 and examples/foleyworld/*.mp4. The prompt is empty (video to audio) unless
--prompt is given. `--mmaudio small_16k`: MMAudio's released network with random weights of the released shapes
(benchmarks/bench_mmaudio.py's builder: CLIP ViT-H, Synchformer, VAE, BigVGAN; about 6 GB) fed with random features
of the right shapes per clip index (seeded; video is not decoded: random-weight encoders would give features no more
meaningful), since the released weights cannot be downloaded here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))          # benchmarks/ (machine, bench_mmaudio)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # the repository (foleyflow)

from machine import cpu_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CANDIDATES = ("steps=10", "sampler=heun,steps=10", "sampler=midpoint,steps=8", "quantize=int8",
                      "sampler=heun,steps=10,quantize=int8")


def parse_candidate(text: str) -> tuple[dict, str | None]:
    """'sampler=heun,steps=10,quantize=int8' -> ({'sampler': 'heun', 'steps': 10}, 'int8'); values are checked
    (one-line FoleyError)."""
    from foleyflow.errors import FoleyError
    from foleyflow.options import canonical, check_quantize

    values, quantize = {}, None
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise FoleyError(f"candidate {text!r}: {part!r} is not key=value")
        key = key.strip().replace("-", "_")
        if key == "quantize":
            quantize = check_quantize(value.strip())
            continue
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value.strip()
    canonical(values)
    return values, quantize


def default_clips() -> list[Path]:
    shared = sorted((ROOT.parent / "shared" / "media").glob("*.mp4"))
    return [p for p in [ROOT / "examples" / "demo.mp4", *shared, *sorted((ROOT / "examples" / "foleyworld").glob(
        "*.mp4"))] if p.is_file()]


def log_mel_db(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(..., num_samples) at `sample_rate` -> (..., 80, frames) log-mel in dB (16 kHz MMAudio mel, magnitude)."""
    from foleyflow.audio import MEL_16K, log_mel_spectrogram, resample

    if sample_rate != MEL_16K.sample_rate:
        audio = torch.from_numpy(resample(audio.numpy(), sample_rate, MEL_16K.sample_rate))
    return 20.0 * log_mel_spectrogram(audio.float(), MEL_16K)


def distances(x: torch.Tensor, ref: torch.Tensor, mel: torch.Tensor, mel_ref: torch.Tensor) -> dict[str, float]:
    return {"latent": float((x - ref).norm() / ref.norm().clamp(min=1e-12)),
            "mel_db": float((mel - mel_ref).abs().mean())}


class Runner:
    """The pipelines (one per quantisation, sharing every model), the clips' conditions and timed sampling."""

    def __init__(self, pipe, mmaudio: bool):
        self.base, self.mmaudio, self.pipes = pipe, mmaudio, {None: pipe}

    def pipe(self, quantize: str | None):
        if quantize not in self.pipes:
            self.pipes[quantize] = self.base.variant(precision="fp32", quantize=quantize)
        return self.pipes[quantize]

    def conditions(self, index: int, clip: Path | None, prompt: str | None):
        from foleyflow.conditioning import Window
        from foleyflow.models.generator import Conditions

        p = self.base
        if self.mmaudio:   # random features of the released shapes, seeded by the clip's index
            dur = p.window_s
            _, nv, ns = p.generator.cfg.seq_lengths(dur)
            g = torch.Generator().manual_seed(1000 + index)
            c = p.generator.cfg
            visual = torch.randn(1, nv, c.visual_dim, generator=g)
            return Conditions(visual, torch.randn(1, ns, c.sync_dim, generator=g), p.text_features(prompt), dur)
        from foleyflow import media

        info = media.probe(clip).video
        return p.conditions(clip, Window(0.0, max(1.0, min(float(info.duration_s), p.window_s))), prompt=prompt)

    def noise(self, c, seed: int) -> torch.Tensor:
        cfg = self.base.generator.cfg
        return torch.randn((1, cfg.seq_lengths(c.duration_s)[0], cfg.latent_channels),
                           generator=torch.Generator().manual_seed(seed))

    def sample(self, c, x0: torch.Tensor, values: dict, quantize: str | None) -> tuple[torch.Tensor, float]:
        """(latents (1, N, C), sampling seconds) of one setting from noise x0."""
        from foleyflow.pipeline import latents_of

        pipe = self.pipe(quantize)
        opts = pipe.options(**values)
        t0 = time.perf_counter()
        x1 = latents_of(pipe.sample(c, opts, x0=x0))
        return x1.float().cpu(), time.perf_counter() - t0

    def sample_mmaudio(self, c, x0: torch.Tensor, steps: int, cfg_scale: float, prompt: str | None) -> float:
        """Seconds of the reference setting sampled as MMAudio's code does (timed only: its text conditions are the
        encoded prompt and '', not foleyflow's stored empty features, so its output is not compared)."""
        from bench_mmaudio import reference_sample, reference_text

        text = reference_text(self.base.text_encoder, prompt or "")
        t0 = time.perf_counter()
        reference_sample(self.base.generator, c.visual, c.sync, text, x0, c.duration_s, steps, cfg_scale)
        return time.perf_counter() - t0

    def mel(self, x1: torch.Tensor) -> torch.Tensor:
        return log_mel_db(self.base.decode(x1), self.base.sample_rate)


def build(args) -> Runner:
    if args.mmaudio:
        if args.mmaudio != "small_16k":
            from foleyflow.errors import FoleyError
            raise FoleyError(f"--mmaudio {args.mmaudio}: only small_16k has a builder (benchmarks/bench_mmaudio.py)")
        from bench_mmaudio import build_pipeline

        return Runner(build_pipeline("fp32"), mmaudio=True)
    from foleyflow.pipeline import FoleyPipeline

    bundle = args.bundle or ROOT / "foleyflow" / "assets" / "default"
    return Runner(FoleyPipeline.from_bundle(bundle, precision="fp32"), mmaudio=False)


def run(args) -> dict:
    from foleyflow.errors import FoleyError

    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, {torch.get_num_threads()} threads, quantized engine "
          f"{torch.backends.quantized.engine}")
    candidates = [(text, *parse_candidate(text)) for text in args.candidates]
    clips: list[Path | None]
    if args.mmaudio:
        clips = [None] * args.num_clips
    else:
        clips = sorted(Path(args.clips).glob("*.mp4")) if args.clips else default_clips()
        clips = clips[:args.num_clips]
        if not clips:
            raise FoleyError(f"no *.mp4 clips in {args.clips or 'the default places'}")
    t0 = time.perf_counter()
    r = build(args)
    p = r.base
    ref_values = {"sampler": "euler", "steps": args.ref_steps, "seed": args.seed}
    if args.cfg is not None:
        ref_values["cfg_scale"] = args.cfg
    cfg_scale = p.options(**ref_values).cfg_scale
    print(f"model: {p.name or 'unnamed'} ({'MMAudio small_16k, random weights' if args.mmaudio else 'bundle'}), "
          f"window {p.window_s:g} s at {p.sample_rate} Hz, built in {time.perf_counter() - t0:.1f} s; reference: "
          f"{args.ref_steps} Euler steps, fp32, guidance {cfg_scale:g}; {len(clips)} clip(s), seed {args.seed} "
          f"(and {args.seed + 1} for the seed row)")
    settings = [("reference", ref_values, None), ("seed", {**ref_values, "seed": args.seed + 1}, None)]
    settings += [(text, {**ref_values, **values}, q) for text, values, q in candidates]
    conds = [r.conditions(i, clip, args.prompt) for i, clip in enumerate(clips)]
    for name, values, q in settings[:1] + settings[2:]:   # warm-up: one step of every setting (and the int8 copy)
        r.sample(conds[0], r.noise(conds[0], args.seed), {**values, "steps": 1}, q)
    if args.mmaudio:
        r.sample_mmaudio(conds[0], r.noise(conds[0], args.seed), 1, cfg_scale, args.prompt)
    rows = {name: {"latent": [], "mel_db": [], "time_s": []} for name, _, _ in settings}
    mmaudio_s = []
    for i, c in enumerate(conds):
        latents = {}
        for name, values, q in settings:   # every setting sampled (and timed) before anything is decoded
            times = []
            for _ in range(args.repeats):   # the output is deterministic: the fastest of --repeats is kept
                latents[name], t = r.sample(c, r.noise(c, values["seed"]), values, q)
                times.append(t)
            rows[name]["time_s"].append(min(times))
        if args.mmaudio:
            mmaudio_s.append(min(r.sample_mmaudio(c, r.noise(c, args.seed), args.ref_steps, cfg_scale, args.prompt)
                                 for _ in range(args.repeats)))
        ref_x = latents["reference"]
        ref_mel = r.mel(ref_x)
        for name, _, _ in settings[1:]:
            for k, v in distances(latents[name], ref_x, r.mel(latents[name]), ref_mel).items():
                rows[name][k].append(v)
        print(f"clip {i + 1}/{len(conds)} {clips[i].name if clips[i] else f'random features {i}'}: " + ", ".join(
            f"{name} {rows[name]['latent'][-1]:.3f}/{rows[name]['mel_db'][-1]:.2f} dB" for name, _, _ in settings[1:]))
    return report(rows, settings, sum(mmaudio_s) if args.mmaudio else None)


def report(rows: dict, settings, mmaudio_s: float | None = None) -> dict:
    """Prints the table; mmaudio_s: the reference setting's time as MMAudio's code samples it (adds `vs MMAudio`)."""
    ref_time = sum(rows["reference"]["time_s"])
    vs = (lambda t: f" {mmaudio_s / t:10.2f}" if t > 0 else f" {'nan':>10s}") if mmaudio_s else (lambda t: "")
    seed = {k: statistics.mean(rows["seed"][k]) for k in ("latent", "mel_db")}
    print(f"\n{'setting':38s} {'latent':>8s} {'/seed':>6s} {'mel dB':>7s} {'/seed':>6s} {'equal':>5s} "
          f"{'sampling s':>10s} {'speed-up':>8s}" + (f" {'vs MMAudio':>10s}" if mmaudio_s else ""))
    summary = {}
    if mmaudio_s:
        print(f"{'reference as MMAudio samples it':38s} {'':>8s} {'':>6s} {'':>7s} {'':>6s} {'':>5s} {mmaudio_s:10.2f} "
              f"{ref_time / mmaudio_s:8.2f}" + vs(mmaudio_s))
        summary["mmaudio_schedule"] = {"time_s": mmaudio_s}
    for name, values, q in settings:
        time_s = sum(rows[name]["time_s"])
        speed = ref_time / time_s if time_s > 0 else float("nan")
        if name == "reference":
            print(f"{name:38s} {'':>8s} {'':>6s} {'':>7s} {'':>6s} {'':>5s} {time_s:10.2f} {1.0:8.2f}" + vs(time_s))
            summary[name] = {"time_s": time_s, **({"vs_mmaudio": mmaudio_s / time_s} if mmaudio_s else {})}
            continue
        lat, mel = statistics.mean(rows[name]["latent"]), statistics.mean(rows[name]["mel_db"])
        ratio_l, ratio_m = lat / max(seed["latent"], 1e-12), mel / max(seed["mel_db"], 1e-12)
        equal = "-" if name == "seed" else ("yes" if ratio_l <= 1 and ratio_m <= 1 else "no")
        print(f"{name:38s} {lat:8.3f} {ratio_l:6.2f} {mel:7.2f} {ratio_m:6.2f} {equal:>5s} {time_s:10.2f} "
              f"{speed:8.2f}" + vs(time_s))
        summary[name] = {"latent": lat, "latent_over_seed": ratio_l, "mel_db": mel, "mel_over_seed": ratio_m,
                         "equal": equal, "time_s": time_s, "speed_up": speed, "per_clip": rows[name],
                         "options": values, "quantize": q,
                         **({"vs_mmaudio": mmaudio_s / time_s} if mmaudio_s and time_s > 0 else {})}
    print("\nequal = both distances at most the seed row's (issue 20: as close to the reference as two seeds are to "
          "each other); speed-up = reference sampling time / candidate's, this run")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="model bundle (default: foleyflow/assets/default)")
    ap.add_argument("--mmaudio", default=None, metavar="PRESET", help="small_16k: MMAudio's released network with "
                    "random weights on random features (instead of --bundle)")
    ap.add_argument("--clips", default=None, metavar="DIR", help="folder of <id>.mp4 clips (e.g. a FoleyWorld split)")
    ap.add_argument("--num-clips", type=int, default=4)
    ap.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES), metavar="SPEC",
                    help="settings to compare, each 'key=value,...' (GenerationOptions fields, quantize=int8)")
    ap.add_argument("--ref-steps", type=int, default=25, help="Euler steps of the reference (default 25)")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale of every setting (default: the model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="time each sampling this many times per clip and keep the "
                    "fastest (default 1; 3 on a quiet machine)")
    ap.add_argument("--prompt", default=None, help="text prompt of every clip (default: none, video to audio)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures (and per-clip values) here")
    args = ap.parse_args(argv)
    if args.bundle and args.mmaudio:
        ap.error("give --bundle or --mmaudio, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    from foleyflow.errors import FoleyError

    try:
        summary = run(args)
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({"cpu": cpu_summary(), "args": vars(args), "settings": summary},
                                                indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
