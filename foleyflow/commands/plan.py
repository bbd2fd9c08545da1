"""`foleyflow plan`: make, check and render chain-of-thought plans (the "foleyflow-cot/1" schema, docs/cot.md).

  foleyflow plan --from-truth CLIP.json -o plan.json     FoleyWorld ground truth -> plan
  foleyflow plan --from-caption "... <I>rain patter</I>"  ALIVE-style caption -> plan (classes only, no times);
                 [--refine [0.8]]                         unknown sound words mapped onto the vocabulary (MiniLM)
  foleyflow plan --validate plan.json [--text four-part]  check a plan (one-line error saying where), print its text
  foleyflow plan VIDEO [--prompt TEXT] [-o plan.json]     the automatic planner: video (+ off-screen sources named
                 [--plot plan.png] [--bundle DIR]         in the prompt) -> plan, with the bundle's planner
                 [--refine [0.8]]                         (the prompt's unknown sound words mapped first)
  foleyflow plan [VIDEO] --prompt TEXT --llm-url URL      optional language-model front end (docs/cot.md): an
                 --llm-model NAME [--llm-timeout 30]      OpenAI-compatible endpoint plans the prompt (key from
                                                          FOLEYFLOW_LLM_API_KEY); with VIDEO the planner's on-screen
                                                          sources stay authoritative
  --plot PNG (with any of the above) draws the plan on a timeline (under the video's frames when there is a VIDEO).
"""
from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser("plan", help="make, check and render chain-of-thought plans (foleyflow-cot/1)",
                       description="Makes a structured chain-of-thought plan (JSON, schema foleyflow-cot/1: sources "
                                   "with class, material, onsets or intervals, pan or trajectory; room and texture "
                                   "words) from FoleyWorld ground truth or an ALIVE-style caption, or checks a plan "
                                   "written by hand, and prints its four-part text (Semantic / Temporal / "
                                   "Aesthetic / Spatial) or monolithic form. Given a VIDEO, the bundle's "
                                   "automatic planner writes the plan from what the video shows (off-screen sources "
                                   "only from --prompt). See docs/cot.md.")
    p.add_argument("video", metavar="VIDEO", nargs="?",
                   help="a video to plan for with the bundle's automatic planner")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-truth", metavar="TRUTH.json", help="a FoleyWorld clip's ground-truth JSON")
    src.add_argument("--from-caption", metavar="TEXT",
                     help="an ALIVE-style caption with <I>sound event</I> tags (semantic only: no times, no places)")
    src.add_argument("--validate", metavar="PLAN.json", help="check a plan file; prints a summary or a one-line error")
    p.add_argument("-o", "--out", help="write the plan here (JSON); default: print it")
    p.add_argument("--prompt", default=None, help="VIDEO: a text naming sounds; FoleyWorld sound classes it names that "
                   "the video does not show become off-screen sources (no times, no places)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="draw the plan as a PNG: one row per source with onset ticks, spans and its pan curve, under "
                        "a strip of the video's frames when there is a VIDEO")
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="VIDEO: the model bundle whose planner and encoders to use (default: the installed default)")
    p.add_argument("--duration", type=float, default=8.0, help="clip length for --from-caption and --llm-url without "
                   "a VIDEO (s, default 8)")
    add_llm_options(p)
    add_refine_option(p, "--from-caption: map tag phrases no class word names onto FoleyWorld's vocabulary by "
                         "MiniLM similarity, when at least SIMILARITY (default 0.8, chosen on val; ALIVE: 0.85); "
                         "--prompt: the same for the prompt's words (so off-screen sources named in other words "
                         "are found)")
    p.add_argument("--text", choices=("four-part", "monolithic"),
                   help="also print the plan as text: the four-part chain of thought or one paragraph")
    p.add_argument("--seed", type=int, default=None,
                   help="draw the text's wording alternatives with this seed (default: the first of each)")
    p.set_defaults(func=run)


def add_refine_option(p, help: str) -> None:
    """--refine [SIMILARITY] (plan --from-caption; generate and generate-set, for the prompt)."""
    p.add_argument("--refine", type=float, nargs="?", const=0.8, default=None, metavar="SIMILARITY", help=help)


def refiner(similarity: float | None):
    """The Refiner of --refine (None without it); one line for a similarity outside (0, 1]."""
    if similarity is None:
        return None
    from foleyflow.cot import PlanError

    if not 0 < similarity <= 1:
        raise PlanError(f"--refine takes a similarity in (0, 1], got {similarity:g}")
    from foleyflow.cot.refine import Refiner

    return Refiner(threshold=similarity)


REFINE_HELP = ("map the prompt's sound words that name no sound class onto the words the model was trained with "
               "(retrieval refinement by MiniLM similarity, when at least SIMILARITY; default 0.8, chosen on val; "
               "docs/cot.md)")


def add_llm_options(p) -> None:
    """--llm-url / --llm-model / --llm-timeout (plan, and generate with --cot llm)."""
    from foleyflow.cot.llm import API_KEY_ENV, DEFAULT_TIMEOUT_S

    p.add_argument("--llm-url", metavar="URL", default=None,
                   help="optional: an OpenAI-compatible chat-completions endpoint (e.g. http://127.0.0.1:8080/v1) that "
                        f"turns --prompt into a plan; its API key, if any, from ${API_KEY_ENV} (off by default)")
    p.add_argument("--llm-model", metavar="NAME", default=None, help="with --llm-url: the model to ask")
    p.add_argument("--llm-timeout", metavar="S", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"with --llm-url: give up after S seconds (default {DEFAULT_TIMEOUT_S:g})")


def llm_endpoint(args: argparse.Namespace, seed: int | None = None):
    """The endpoint of --llm-url / --llm-model (both needed; one-line errors), or None when neither is given."""
    from foleyflow.cot.llm import LLMError, endpoint

    if args.llm_url is None and args.llm_model is None:
        return None
    if args.llm_url is None or args.llm_model is None:
        raise LLMError("--llm-url and --llm-model go together")
    return endpoint(args.llm_url, args.llm_model, args.llm_timeout, seed=seed)


def run(args: argparse.Namespace) -> int:
    from foleyflow.cot import PlanError, plan_from_alive, plan_from_truth, read_plan
    from foleyflow.cot.convert import KNOWN_CLASSES

    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise PlanError(f"--plot writes a PNG file; got {args.plot}")
    if args.refine is not None and args.prompt is not None:   # the prompt's unknown sound words, first
        refined = refiner(args.refine).refine_text(args.prompt)
        if refined != args.prompt:
            print(f"prompt refined: {refined}", file=sys.stderr)
        args.prompt = refined
    ep = llm_endpoint(args, args.seed)
    if ep is not None:
        if args.from_truth or args.from_caption or args.validate:
            raise PlanError("--llm-url plans from --prompt; it does not go with --from-truth / --from-caption / "
                            "--validate")
        if not (args.prompt or "").strip():
            raise PlanError("--llm-url plans from a prompt: give --prompt TEXT")
        if args.video is None and not args.duration > 0:
            raise PlanError(f"--duration must be positive, got {args.duration:g}")
        from foleyflow.planning import plan_with_llm

        bundle = None
        if args.video is not None:
            from foleyflow.commands.generate import DEFAULT_BUNDLE

            bundle = args.bundle or DEFAULT_BUNDLE
        plan, notes = plan_with_llm(ep, args.prompt, video=args.video, duration_s=args.duration, bundle=bundle)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        _finish(args, plan, print_plan=True)
        return 0
    if args.video is None and (args.prompt is not None or args.bundle is not None):
        raise PlanError("--prompt and --bundle are for planning a VIDEO (or for --llm-url)")
    if args.video is not None:
        if args.from_truth or args.from_caption or args.validate:
            raise PlanError("give either VIDEO or one of --from-truth / --from-caption / --validate")
        plan = plan_from_video(args)
        _finish(args, plan, print_plan=True)
        return 0
    if args.from_truth:
        from foleyflow.world.truth import read_truth

        plan = plan_from_truth(read_truth(args.from_truth))
    elif args.from_caption is not None:
        if not args.duration > 0:
            raise PlanError(f"--duration must be positive, got {args.duration:g}")
        r = refiner(args.refine)
        plan = plan_from_alive(args.from_caption, args.duration, refine=r.match_class if r else None)
    elif args.validate:
        if args.out:
            raise PlanError("--validate checks a plan in place; -o is for --from-truth and --from-caption")
        plan = read_plan(args.validate)
        onsets = sum(len(s.onsets) for s in plan.sources)
        spans = sum(len(s.intervals) for s in plan.sources)
        print(f"{args.validate}: valid foleyflow-cot/1 plan, {plan.duration_s:g} s, {len(plan.sources)} sources, "
              f"{onsets} onsets, {spans} intervals")
        for i, s in enumerate(plan.sources):
            if s.sound_class not in KNOWN_CLASSES:
                print(f"note: sources[{i}].class '{s.sound_class}' is not in FoleyWorld's vocabulary; the default "
                      f"models were not trained on it")
    else:
        raise PlanError("nothing to do: give --from-truth TRUTH.json, --from-caption TEXT or --validate PLAN.json")
    _finish(args, plan, print_plan=not args.validate)
    return 0


def plan_from_video(args: argparse.Namespace):
    """The plan of args.video by the bundle's planner (one-line errors for a missing video or planner)."""
    import time

    from foleyflow.commands.generate import DEFAULT_BUNDLE
    from foleyflow.media import probe
    from foleyflow.planning import bundle_planner_path, load_video_planner, plan_video

    if probe(args.video).video is None:
        from foleyflow.planning import PlannerError

        raise PlannerError(f"{args.video}: has no video stream")
    bundle = args.bundle or DEFAULT_BUNDLE
    bundle_planner_path(bundle)        # a bundle without a planner fails here, before any model is loaded
    vp = load_video_planner(bundle)
    timings: dict = {}
    t0 = time.perf_counter()
    plan = plan_video(args.video, vp, args.prompt, timings)
    print(f"planned {args.video} ({plan.duration_s:.2f} s) in {time.perf_counter() - t0:.2f} s (planner network and "
          f"decoding {timings.get('planner', 0):.3f} s): {len(plan.sources)} sources", file=sys.stderr)
    return plan


def _finish(args: argparse.Namespace, plan, *, print_plan: bool) -> None:
    from foleyflow.cot import four_part_text, monolithic_text, plan_to_dict, write_plan

    if args.out:
        write_plan(args.out, plan)
        print(f"wrote {args.out}: {len(plan.sources)} sources")
    elif print_plan:
        print(json.dumps(plan_to_dict(plan), indent=1))
    if args.plot:
        from foleyflow.cot.plot import plot_plan

        plot_plan(plan, args.plot, video=args.video)
        print(f"wrote {args.plot}")
    if args.text:
        render = four_part_text if args.text == "four-part" else monolithic_text
        print(render(plan, args.seed))
