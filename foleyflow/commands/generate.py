"""`foleyflow generate VIDEO`: put a generated stereo soundtrack into a video (and a .wav beside it); without VIDEO,
text-to-audio into a .wav. A thin layer over `foleyflow.pipeline.FoleyPipeline` (see docs/generate.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foleyflow.options import DEFAULTS, GUIDANCE, QUANTIZE, SAMPLERS

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "default"


def option_values(args: argparse.Namespace) -> dict:
    """The generation options given on the command line (None = not given), checked (one-line FoleyError)."""
    from foleyflow.options import canonical

    values = {"steps": args.steps, "cfg_scale": args.cfg, "seed": args.seed, "sampler": args.sampler,
              "guidance": args.guidance, "apg_eta": args.apg_eta, "text_scale": getattr(args, "text_scale", None),
              "video_scale": getattr(args, "video_scale", None),
              "plan_scale": getattr(args, "plan_scale", None), "overlap_s": getattr(args, "overlap", None),
              "negative": getattr(args, "negative", None), "sample_rate": getattr(args, "sample_rate", None),
              "loudness_lufs": getattr(args, "loudness", None)}
    values = {k: v for k, v in values.items() if v is not None}
    canonical(values)
    return values


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a synchronized stereo soundtrack for a video (or audio from text)",
                       description="Writes VIDEO with a generated stereo soundtrack (the picture is copied, not "
                                   "re-encoded; an existing soundtrack is replaced) and the soundtrack as a .wav "
                                   "beside it. Without VIDEO, generates --duration seconds from the text into a .wav.")
    p.add_argument("video", metavar="VIDEO", nargs="?", default=None, help="input video (any container, frame rate "
                   "and size); leave out for text-to-audio")
    p.add_argument("-o", "--out", default=None, help="output video (.mp4/.mov/.mkv; default VIDEO_STEM.foley.mp4 in "
                   "the current folder), or the .wav in text-only mode (default generated.wav)")
    p.add_argument("--prompt", default=None, help="text describing the sound")
    p.add_argument("--cot", default=None, metavar="FILE", help="chain-of-thought file (Semantic: / Temporal: / "
                   "Aesthetic: / Spatial: parts, FoleyWorld's format), a plan JSON (schema foleyflow-cot/1, "
                   "see `foleyflow plan`): its four-part text, and its time-aligned track when the model follows "
                   "plans; 'auto': the bundle's planner writes the plan from the video (with --prompt, the prompt "
                   "stays the text and the plan gives the timing; a bundle made to follow its planner does this "
                   "by default); 'none': no plan; or 'llm': the language model "
                   "of --llm-url writes it from --prompt (with a VIDEO the planner's on-screen sources stay "
                   "authoritative; docs/cot.md)")
    from foleyflow.commands.plan import REFINE_HELP, add_llm_options, add_refine_option

    add_llm_options(p)
    add_refine_option(p, REFINE_HELP)
    p.add_argument("--negative", default=None, help="negative prompt: what the sound should not be")
    p.add_argument("--steps", type=int, default=None, help=f"sampling steps (default: the bundle's, else "
                   f"{DEFAULTS.steps})")
    p.add_argument("--cfg", type=float, default=None, help=f"classifier-free guidance scale (default: the bundle's, "
                   f"else {DEFAULTS.cfg_scale:g}); 1 = no guidance")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help=f"ODE sampler (default: the bundle's, else "
                   f"{DEFAULTS.sampler}); heun and midpoint evaluate the network twice per step; dopri5 is adaptive "
                   "(its own step sizes; --steps only paces the progress bar)")
    p.add_argument("--guidance", default=None, choices=GUIDANCE, help="how guidance combines the network's "
                   "predictions: cfg (MMAudio's), apg (adaptive projected guidance) or multi (separate text and video "
                   f"weights, 4 network branches) (default: the bundle's, else {DEFAULTS.guidance})")
    p.add_argument("--apg-eta", type=float, default=None, metavar="ETA", help="with --guidance apg: how much of the "
                   f"guidance parallel to the prediction is kept, 0..1 (default {DEFAULTS.apg_eta:g})")
    p.add_argument("--text-scale", type=float, default=None, metavar="W", help="with --guidance multi: extra weight "
                   f"of the text over the video-only prediction (default {DEFAULTS.text_scale:g})")
    p.add_argument("--video-scale", type=float, default=None, metavar="W", help="with --guidance multi: extra "
                   f"weight of the video over the text-only prediction (default {DEFAULTS.video_scale:g})")
    p.add_argument("--plan-scale", type=float, default=None, metavar="W", help="with a plan (--cot) and a generator "
                   "that follows plans: guidance weight of the plan's time-aligned track on its own (default: guided "
                   "with the rest at --cfg; 1 = the track unamplified, text and video at --cfg)")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (same seed and inputs -> same audio; default "
                   f"{DEFAULTS.seed})")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="generator precision: auto = bf16 where the CPU/GPU supports it, else fp32")
    add_quantize_option(p)
    p.add_argument("--sample-rate", type=int, default=None, metavar="HZ", help="resample the output to HZ")
    p.add_argument("--loudness", type=float, default=None, metavar="LUFS", help="normalise the integrated loudness")
    p.add_argument("--bundle", default=None, metavar="DIR", help=f"model bundle folder (default {DEFAULT_BUNDLE} "
                   "when present)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="seconds to generate (text-only mode)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    p.add_argument("--overlap", type=float, default=None, metavar="S",
                   help="overlap of the windows of videos longer than the model's window (default: the bundle's, else "
                   f"{DEFAULTS.overlap_s:g} s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files that foleyflow did not write (its own are always replaced)")
    add_stereo_option(p)
    p.set_defaults(func=run)


def add_quantize_option(p) -> None:
    """`--quantize int8` (every command that builds a pipeline): FoleyPipeline(quantize=...)."""
    p.add_argument("--quantize", default=None, choices=QUANTIZE, help="int8: sample with the generator's Linear "
                   "layers dynamically quantised to int8 (CPU only, fp32 otherwise; convolutions stay fp32; "
                   "docs/speed.md has its measured closeness and speed); default: no quantisation")


def add_stereo_option(p) -> None:
    """`--stereo` (generate, generate-set): write a mono model's soundtrack as two equal channels."""
    p.add_argument("--stereo", action="store_true", help="write a mono soundtrack as two equal channels (a converted "
                   "MMAudio bundle makes mono audio, as MMAudio does, and writes one channel without this); "
                   "foleyflow's own models are stereo already")


def output_channels(audio, stereo: bool):
    """(C, num_samples) -> the channels written: a mono soundtrack is duplicated into two equal ones if `stereo`."""
    import numpy as np

    return np.repeat(audio, 2, axis=0) if stereo and audio.shape[0] == 1 else audio


def plan_condition(plan, wording=None):
    """How a plan conditions generation, for every command that takes one (`generate --cot FILE|auto|llm`,
    `generate-set --text truth|auto`, benchmarks, the web UI and the REST service): `foleyflow.planning.plan_condition`
    (the plan's four-part text as the four CoT parts, and the plan itself, laid on the latent timeline as a
    time-aligned track when the generator follows plans). wording: a foleyflow.cot.Wording or a seed."""
    from foleyflow.planning import plan_condition as condition

    return condition(plan, wording)


def auto_cot(video: str, bundle: str | Path, planner=None):
    """`--cot auto`: the bundle's planner plans the video (one-line error when the bundle has none); returns
    `plan_condition(plan)` (the plan's four CoT parts, the plan) through `foleyflow.planning.planned_cot`, as the web
    UI's plan button and the REST service's cot=auto do. planner: a loaded foleyflow.planning.VideoPlanner to reuse
    over many videos (default: the bundle's, loaded here)."""
    from foleyflow.planning import bundle_planner_path, load_video_planner, planned_cot

    if planner is None:
        bundle_planner_path(bundle)
        planner = load_video_planner(bundle)
    return planned_cot(video, planner)


def llm_cot(ep, prompt: str, video: str | None, duration_s: float | None, bundle: str | Path):
    """`--cot llm`: the language model's plan of the prompt (combined with the bundle's planner's plan of the video
    when there is a video and a planner: foleyflow.planning.plan_with_llm); returns plan_condition(plan)."""
    from foleyflow.planning import plan_with_llm

    plan, notes = plan_with_llm(ep, prompt, video=video, duration_s=duration_s, bundle=bundle)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return plan_condition(plan)


def check_seed(seed: int) -> int:
    """torch seeds are 64-bit: refuse others before any model is loaded."""
    if not 0 <= seed < 2 ** 64:
        _fail(f"--seed must be between 0 and 2^64-1, got {seed}")
    return seed


def _fail(msg: str):
    from foleyflow.errors import FoleyError
    raise FoleyError(msg)


def read_cot_file(path: Path):
    """(four CoT parts, plan or None) of `--cot FILE`: a plan JSON (schema foleyflow-cot/1; one-line PlanError when
    malformed) gives its four-part text and the plan itself (the pipeline lays it on the latent timeline for a
    generator with a plan pathway); any other file is a four-part text."""
    from foleyflow.conditioning import cot_parts

    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        from foleyflow.cot import read_plan

        return plan_condition(read_plan(path))
    return cot_parts(text), None


def _check_out(path: Path) -> Path:
    import os

    if path.is_dir():
        _fail(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        _fail(f"cannot write {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        _fail(f"cannot write {path}: permission denied")
    return path


def run(args: argparse.Namespace) -> int:
    from foleyflow.errors import FoleyError
    from foleyflow.pipeline import check_duration

    # ---- every argument is checked before any model is loaded
    if args.seed is not None:
        check_seed(args.seed)   # first: its message names the flag
    values = option_values(args)
    from foleyflow.options import check_quantize

    check_quantize(args.quantize, args.device, args.precision)
    if args.quantize:
        from foleyflow.models.generator_sampling import int8_engine

        int8_engine()   # this CPU/torch has int8 kernels (one line otherwise), before any model is loaded
    if args.duration is not None:
        check_duration(args.duration)
    if not 0 <= args.threads <= 1024:
        _fail(f"--threads must be between 0 (default) and 1024, got {args.threads}")
    cot = plan = None
    if args.prompt is not None and args.cot not in (None, "llm", "auto", "none"):
        _fail("give --prompt or a --cot file, not both (with --prompt, --cot auto adds the planner's timing and "
              "--cot llm plans from the prompt)")
    if args.cot == "auto" and args.video is None:
        _fail("--cot auto plans from the video; give a VIDEO")
    from foleyflow.commands.plan import llm_endpoint

    ep = llm_endpoint(args, args.seed)
    if (ep is not None) != (args.cot == "llm"):
        _fail("--cot llm needs --llm-url and --llm-model" if ep is None else "--llm-url is for --cot llm")
    if args.cot == "llm" and not (args.prompt or "").strip():
        _fail("--cot llm plans from a prompt: give --prompt TEXT")
    if args.refine is not None:
        from foleyflow.commands.plan import refiner

        if args.prompt is None:
            _fail("--refine rewrites the prompt: give --prompt TEXT")
        refined = refiner(args.refine).refine_text(args.prompt)      # checks the similarity (one line) first
        if refined != args.prompt:
            print(f"prompt refined: {refined}")
        args.prompt = refined
    if args.cot is not None and args.cot not in ("auto", "llm", "none"):
        from foleyflow.cot import PlanError

        path = Path(args.cot)
        if not path.is_file():
            _fail(f"chain-of-thought file not found: {path}")
        try:
            cot, plan = read_cot_file(path)
        except UnicodeDecodeError:
            _fail(f"{path}: not a UTF-8 text file")
        except PlanError:
            raise                  # names the file already
        except FoleyError as e:
            _fail(f"{path}: {e}")
    if args.video is not None:
        from foleyflow.media import probe
        from foleyflow.media.write import AAC_RATES

        if args.duration is not None:
            _fail("--duration is for text-only mode; with a video the soundtrack spans the whole video")
        info = probe(args.video)
        if info.video is None:
            _fail(f"{args.video}: has no video stream (for text-to-audio leave out VIDEO and give --duration)")
        out = Path(args.out) if args.out else Path.cwd() / f"{Path(args.video).stem}.foley.mp4"
        if out.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
            _fail(f"output {out} must be a video file (.mp4, .mov or .mkv)")
        if out.resolve() == Path(args.video).resolve():
            _fail(f"output {out} is the input video; choose another path")
        wav = _check_out(out.with_suffix(".wav"))
        _check_out(out)
        if args.sample_rate is not None and args.sample_rate not in AAC_RATES:
            _fail(f"--sample-rate {args.sample_rate}: AAC in the video cannot store it; use one of "
                  f"{', '.join(map(str, AAC_RATES))}")
    else:
        if args.duration is None:
            _fail("give a VIDEO, or --duration S for text-only generation")
        out = None
        wav = _check_out(Path(args.out) if args.out else Path.cwd() / "generated.wav")
        if wav.suffix.lower() != ".wav":
            _fail(f"text-only mode writes a .wav; got {wav}")
    bundle = args.bundle or (str(DEFAULT_BUNDLE) if (DEFAULT_BUNDLE / "bundle.json").is_file() else None)
    if bundle is None:
        _fail(f"the default model is missing from {DEFAULT_BUNDLE} (a broken install?); give --bundle DIR")
    # ---- outputs against every input and against files the user did not name (the side .wav included)
    from foleyflow.outputs import check_outputs, own_tag

    inputs = [args.video, args.cot, bundle] + ([p for p in Path(bundle).iterdir()] if Path(bundle).is_dir() else [])
    check_outputs([wav] + ([out] if out is not None else []), inputs, overwrite=args.overwrite)
    mode = args.cot
    if mode is None and args.video is not None:
        from foleyflow.planning import plans_by_default

        if plans_by_default(bundle):      # the bundle's generator is trained to follow its planner's plans
            mode = "auto"
            print("plan: the bundle plans the video with its planner by default (--cot none to turn it off)")
    if mode == "auto":
        from foleyflow.planning import bundle_planner_path

        bundle_planner_path(bundle)         # a bundle without a planner: one line before any model loads
    prompt = args.prompt
    if args.cot == "llm":
        cot, plan = llm_cot(ep, args.prompt, args.video, args.duration, bundle)
        prompt = None                       # it went into the plan

    # ---- models
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from foleyflow.media import mux_audio, write_audio
    from foleyflow.pipeline import FoleyPipeline

    pipe = FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision,
                                     quantize=args.quantize)
    if mode == "auto":                      # on the pipeline's encoders: the video is decoded and encoded once
        from foleyflow.planning import default_plan, load_video_planner

        vp = load_video_planner(bundle, pipeline=pipe)
        if args.cot == "auto":              # asked for: a video that cannot be planned is an error
            cot, plan = auto_cot(args.video, bundle, vp)
        else:                               # the bundle's default: a video too short to plan goes without
            cot, plan, note = default_plan(vp, args.video, args.prompt)
            if note:
                print(f"note: {note}")
                mode = None
        if args.prompt is not None:
            cot = None                      # the prompt is the text; the plan gives the time-aligned track
    if mode in ("auto", "llm"):
        from foleyflow.cot import four_part_text

        if cot is None and prompt is not None:
            print(f"plan: {len(plan.sources)} sources; the text is the prompt, the plan gives the timing")
        else:
            print(f"plan: {len(plan.sources)} sources; chain of thought: {four_part_text(plan)}")
    if not pipe.trained:
        print(f"warning: the bundle '{pipe.name}' is UNTRAINED (random weights): the sound it makes is noise-like "
              "and unrelated to the video or text", file=sys.stderr)
    if not pipe.generator.cfg.use_text and (prompt or cot or args.negative):
        print(f"warning: the bundle '{pipe.name}' was trained without text (an ablation): the prompt, chain of "
              "thought and negative prompt are ignored", file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=None, desc="sampling", unit="step", file=sys.stderr, disable=None, dynamic_ncols=True)

    from foleyflow.faults import pause_point

    def progress(done: int, total: int) -> None:
        pause_point("sampling")  # fault injection for tests (foleyflow.faults); no-op otherwise
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    try:
        result = pipe.generate(args.video, prompt=prompt, cot=cot, duration_s=args.duration,
                               options=pipe.options(**values), progress=progress, plan=plan)
    finally:
        bar.close()
    audio = output_channels(result.audio, args.stereo)
    write_audio(wav, audio, result.sample_rate, tag=own_tag("generate"))
    n = audio.shape[1]
    win = f"{len(result.windows)} windows of {pipe.window_s:g} s, crossfaded" if len(result.windows) > 1 else \
        "1 window"
    o = result.options
    print(f"generated {n} samples at {result.sample_rate} Hz = {n / result.sample_rate:.3f} s ({win}, "
          f"{result.precision}{' int8' if result.quantize else ''}, {o.steps} {o.sampler} steps, {o.guidance} "
          f"{o.cfg_scale:g}, seed {o.seed})")
    for note in result.notes:
        if note.startswith("warning:"):
            print(note, file=sys.stderr)
        else:
            print(f"note: {note}")
    if audio.shape[0] == 1:
        print("note: the model makes mono audio (as MMAudio does); --stereo writes it as two equal channels")
    print(f"wrote {wav}")
    if out is not None:
        mux = mux_audio(args.video, audio, result.sample_rate, out, tag=own_tag("generate"))
        if mux.replaced_audio:
            print("replaced the video's original soundtrack with the generated one")
        print(f"wrote {mux.path} (video copied, not re-encoded)")
    if not pipe.trained:
        print("note: this sound comes from an UNTRAINED model (random weights), not from a trained foleyflow model")
    return 0
