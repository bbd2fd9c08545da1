"""Assemble a model bundle (see foleyflow/bundle.py) from trained checkpoints, e.g. the default FoleyWorld model:

    python recipes/assemble_bundle.py --out foleyflow/assets/default --name foleyworld-tiny \
        --generator runs/flow/generator_ema.safetensors --semantic runs/semantic/semantic_av.safetensors \
        --sync runs/sync/sync_av.safetensors --vae foleyflow/assets/codec/vae.safetensors \
        --vocoder foleyflow/assets/codec/vocoder.safetensors --reference vae vocoder --fp16 \
        --text-budget 64:64,256,64,96 --card MODEL_CARD.md --trained-on "FoleyWorld train split ..." \
        [--planner runs/planner/planner.safetensors]

The text budget must be the one the features cache was made with (the generator's text length follows from it).
--card: a Markdown model card to use instead of the generic FoleyWorld card (it should say what the model was
trained on, the exact commands and seeds, and what it can and cannot do).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from foleyflow.bundle import assemble_bundle
    from foleyflow.commands.extract_features import parse_budget
    from foleyflow.errors import FoleyError

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    for role in ("generator", "semantic", "sync", "vae", "vocoder"):
        ap.add_argument(f"--{role}", required=True, metavar="CKPT")
    ap.add_argument("--text-budget", default="256", help="as for `foleyflow extract-features`")
    ap.add_argument("--text-overflow", default="error", choices=("error", "truncate", "split"))
    ap.add_argument("--trained-on", default="FoleyWorld", help="one line for the generic model card")
    ap.add_argument("--card", default=None, help="Markdown model card file")
    ap.add_argument("--fp16", action="store_true", help="store float32 tensors as float16")
    ap.add_argument("--planner", default=None, metavar="CKPT",
                    help="the automatic planner (recipes/train_planner.py), trained on these encoders' features")
    ap.add_argument("--reference", nargs="*", default=[], choices=("generator", "vae", "vocoder", "semantic_encoder",
                                                                   "sync_encoder"),
                    help="roles to reference by relative path instead of copying")
    ap.add_argument("--steps", type=int, default=25, help="default sampling steps of the bundle")
    ap.add_argument("--cfg", type=float, default=4.5, help="default guidance scale of the bundle")
    ap.add_argument("--plan-scale", type=float, default=None, metavar="W",
                    help="default guidance weight of the plan track alone (generate --plan-scale)")
    ap.add_argument("--plan-by-default", action="store_true",
                    help="the bundle plans every video with its planner unless told otherwise (bundle.json "
                         "\"plan\": \"auto\"; needs --planner and a generator that follows plans)")
    args = ap.parse_args(argv)
    try:
        from foleyflow.models.generator_io import load_generator

        gcfg = load_generator(args.generator).cfg
        if (gcfg.distilled and gcfg.plan_dim > 0 and args.plan_scale is not None
                and args.plan_scale != gcfg.distill_plan_scale):
            raise FoleyError(f"--plan-scale {args.plan_scale:g}: the distilled generator folds the plan weight "
                             f"{gcfg.distill_plan_scale:g} in; give that or none")
        card = Path(args.card).read_text() if args.card else None
        out = assemble_bundle(args.out, generator=args.generator, vae=args.vae, vocoder=args.vocoder,
                              semantic_encoder=args.semantic, sync_encoder=args.sync,
                              text_cfg=parse_budget(args.text_budget, args.text_overflow), name=args.name,
                              trained_on=args.trained_on, card=card, fp16=args.fp16, reference=tuple(args.reference),
                              planner=args.planner, plan="auto" if args.plan_by_default else None,
                              defaults={"steps": args.steps, "cfg": args.cfg, "overlap_s": 1.0,
                                        **({} if args.plan_scale is None else {"plan_scale": args.plan_scale})})
    except (FoleyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote bundle {out} ({total / 1e6:.1f} MB in the folder; referenced: {', '.join(args.reference) or '-'})")
    plan_dim = gcfg.plan_dim
    print(f"the generator follows plans: a {plan_dim}-channel plan track (generate --cot PLAN.json)" if plan_dim
          else "the generator has no plan pathway (a plan reaches it only as chain-of-thought text)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
