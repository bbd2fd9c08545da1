"""`foleyflow plan`: make, check and render chain-of-thought plans (the "foleyflow-cot/1" schema, docs/cot.md).

  foleyflow plan --from-truth CLIP.json -o plan.json     FoleyWorld ground truth -> plan
  foleyflow plan --from-caption "... <I>rain patter</I>"  ALIVE-style caption -> plan (classes only, no times);
                 [--refine [0.85]]                        unknown sound words mapped onto the vocabulary (MiniLM)
  foleyflow plan --validate plan.json [--text four-part]  check a plan (one-line error saying where), print its text
The automatic planner (video -> plan) does not exist yet: `foleyflow plan VIDEO` says so.
"""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("plan", help="make, check and render chain-of-thought plans (foleyflow-cot/1)",
                       description="Makes a structured chain-of-thought plan (JSON, schema foleyflow-cot/1: sources "
                                   "with class, material, onsets or intervals, pan or trajectory; room and texture "
                                   "words) from FoleyWorld ground truth or an ALIVE-style caption, or checks a plan "
                                   "written by hand, and prints its four-part text (Semantic / Temporal / "
                                   "Aesthetic / Spatial) or monolithic form. The automatic planner from a video "
                                   "does not exist yet (issue 19); write or edit a plan by hand meanwhile. "
                                   "See docs/cot.md.")
    p.add_argument("video", metavar="VIDEO", nargs="?",
                   help="a video to plan for (not available yet: the automatic planner does not exist)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-truth", metavar="TRUTH.json", help="a FoleyWorld clip's ground-truth JSON")
    src.add_argument("--from-caption", metavar="TEXT",
                     help="an ALIVE-style caption with <I>sound event</I> tags (semantic only: no times, no places)")
    src.add_argument("--validate", metavar="PLAN.json", help="check a plan file; prints a summary or a one-line error")
    p.add_argument("-o", "--out", help="write the plan here (JSON); default: print it")
    p.add_argument("--duration", type=float, default=8.0, help="clip length for --from-caption (s, default 8)")
    p.add_argument("--refine", type=float, nargs="?", const=0.85, default=None, metavar="SIMILARITY",
                   help="--from-caption: map tag phrases no class word names onto FoleyWorld's vocabulary by MiniLM "
                        "similarity, when at least SIMILARITY (default 0.85, as ALIVE)")
    p.add_argument("--text", choices=("four-part", "monolithic"),
                   help="also print the plan as text: the four-part chain of thought or one paragraph")
    p.add_argument("--seed", type=int, default=None,
                   help="draw the text's wording alternatives with this seed (default: the first of each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from foleyflow.cot import (PlanError, four_part_text, monolithic_text, plan_from_alive, plan_from_truth,
                               plan_to_dict, read_plan, write_plan)
    from foleyflow.cot.convert import KNOWN_CLASSES

    if args.video is not None:
        if args.from_truth or args.from_caption or args.validate:
            raise PlanError("give either VIDEO or one of --from-truth / --from-caption / --validate")
        raise PlanError("the automatic planner (video -> plan) does not exist yet; make a plan with --from-truth or "
                        "--from-caption, or write one by hand (docs/cot.md), and check it with --validate")
    if args.from_truth:
        from foleyflow.world.truth import read_truth

        plan = plan_from_truth(read_truth(args.from_truth))
    elif args.from_caption is not None:
        if not args.duration > 0:
            raise PlanError(f"--duration must be positive, got {args.duration:g}")
        refine = None
        if args.refine is not None:
            from foleyflow.cot.refine import Refiner

            if not 0 < args.refine <= 1:
                raise PlanError(f"--refine takes a similarity in (0, 1], got {args.refine:g}")
            refine = Refiner(threshold=args.refine).match_class
        plan = plan_from_alive(args.from_caption, args.duration, refine=refine)
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
    if args.out:
        write_plan(args.out, plan)
        print(f"wrote {args.out}: {len(plan.sources)} sources")
    elif not args.validate:
        print(json.dumps(plan_to_dict(plan), indent=1))
    if args.text:
        render = four_part_text if args.text == "four-part" else monolithic_text
        print(render(plan, args.seed))
    return 0
