"""`foleyflow generate-set MANIFEST --out DIR`: generate the soundtrack of every video of a manifest into DIR/<id>.wav,
loading the models once; the input of `foleyflow evaluate --generated DIR`. Resumable: clips whose .wav exists are
skipped. Each clip's seed is derived from --seed and the clip id (crc32), so a clip's audio does not depend on which
other clips are in the run or in what order."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foleyflow.options import GUIDANCE, SAMPLERS

TEXT_MODES = ("none", "caption", "cot")


def register(sub) -> None:
    p = sub.add_parser("generate-set", help="generate soundtracks for every video of a manifest (for evaluation)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest (id, video, optional caption / cot)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <id>.wav (created if missing)")
    p.add_argument("--split", default=None, help="only rows of this split")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N rows (after --split)")
    p.add_argument("--text", default="none", choices=TEXT_MODES,
                   help="condition on nothing but the video (none, default), the row's caption, or its chain of "
                        "thought (an oracle plan: FoleyWorld's CoT lists the true onset times)")
    p.add_argument("--bundle", default=None, metavar="DIR", help="model bundle (default: the installed default model)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="ODE sampler (default: the bundle's)")
    p.add_argument("--guidance", default=None, choices=GUIDANCE, help="cfg, apg or multi (default: the bundle's; "
                   "see foleyflow generate --help)")
    p.add_argument("--apg-eta", type=float, default=None, metavar="ETA", help="APG's parallel damping (0..1)")
    p.add_argument("--text-scale", type=float, default=None, metavar="W", help="--guidance multi: text weight")
    p.add_argument("--video-scale", type=float, default=None, metavar="W", help="--guidance multi: video weight")
    p.add_argument("--seed", type=int, default=0, help="base seed; each clip's is derived from it and the clip id")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch (default: torch's)")
    p.set_defaults(func=run)


def clip_seed(seed: int, clip_id: str) -> int:
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(clip_id.encode())) % (2 ** 63)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from tqdm import tqdm

    from foleyflow.commands.generate import DEFAULT_BUNDLE, option_values
    from foleyflow.data.manifest import read_manifest
    from foleyflow.errors import FoleyError

    values = option_values(argparse.Namespace(**{**vars(args), "seed": None}))  # checked before anything is read

    rows = read_manifest(args.manifest)
    if args.split is not None:
        rows = [r for r in rows if r.split == args.split]
    rows = [r for r in rows if r.video is not None]
    if args.limit is not None:
        if args.limit < 1:
            raise FoleyError(f"--limit must be at least 1, got {args.limit}")
        rows = rows[:args.limit]
    if not rows:
        raise FoleyError(f"{args.manifest}: no rows with a video" + (f" in split '{args.split}'" if args.split else ""))
    if args.text != "none":
        lacking = [r.id for r in rows if not getattr(r, args.text)]
        if lacking:
            raise FoleyError(f"{len(lacking)} rows have no {args.text} (e.g. {lacking[0]}); use --text none")
    bundle = args.bundle or (str(DEFAULT_BUNDLE) if (DEFAULT_BUNDLE / "bundle.json").is_file() else None)
    if bundle is None:
        raise FoleyError(f"the default model is missing from {DEFAULT_BUNDLE} (a broken install?); give --bundle DIR")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FoleyError(f"cannot create the output folder {out}: {e.strerror}") from None
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from foleyflow.media import write_audio
    from foleyflow.pipeline import FoleyPipeline

    pipe = FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision)
    if not pipe.trained:
        print(f"warning: the bundle '{pipe.name}' is UNTRAINED (random weights)", file=sys.stderr)
    options = pipe.options(**values)   # the settings every clip is generated with (its seed: clip_seed)
    todo = [r for r in rows if not (out / f"{r.id}.wav").is_file()]
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    for r in tqdm(todo, desc="generate-set", unit="clip", file=sys.stderr, disable=None, dynamic_ncols=True):
        kw = {"prompt": r.caption} if args.text == "caption" else {"cot": r.cot} if args.text == "cot" else {}
        res = pipe.generate(r.video, options=options.replace(seed=clip_seed(args.seed, r.id)), **kw)
        tmp = out / f".{r.id}.tmp.wav"
        write_audio(tmp, res.audio, res.sample_rate)
        tmp.replace(out / f"{r.id}.wav")
        for k, v in res.timings_s.items():
            timings[k] = timings.get(k, 0.0) + v
    wall = time.perf_counter() - t_start
    recorded = {k: v for k, v in options.as_record().items() if k != "seed"}
    settings = {"manifest": str(args.manifest), "split": args.split, "text": args.text, "bundle": str(bundle),
                **recorded, "cfg": options.cfg_scale, "seed": args.seed, "clip_seed": "crc32 of the id, see clip_seed",
                "precision": pipe.precision}
    (out / "generate_set.json").write_text(json.dumps({"settings": settings, "clips": len(rows),
                                                      "generated_now": len(todo), "wall_s": round(wall, 2),
                                                      "timings_s": {k: round(v, 2) for k, v in timings.items()}},
                                                     indent=1))
    per = f", {wall / len(todo):.2f} s per clip" if todo else ""
    print(f"wrote {len(todo)} clips to {out} ({len(rows) - len(todo)} already there{per})")
    return 0
