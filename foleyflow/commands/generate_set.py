"""`foleyflow generate-set MANIFEST --out DIR`: generate the soundtrack of every video of a manifest into DIR/<id>.wav,
loading the models once; the input of `foleyflow evaluate --generated DIR`. Resumable: DIR/generate_set.json records
each .wav this command made (with a key of the settings, the bundle's sha256, the clip's video and text, and the
file's sha256); a clip is skipped only when its recorded key and file still match. Existing <id>.wav files that it did
not record (e.g. --out pointing at a FoleyWorld folder) are refused unless --overwrite. Each clip's seed is derived from --seed and the clip id (crc32), so a clip's audio does not depend on which
other clips are in the run or in what order. A clip that fails is reported at the end (the others are generated) and the
exit code is then non-zero. The loop is shared with `foleyflow batch` (foleyflow.commands.itemloop).

--text chooses the text condition (the rows of issue 19's ablation): none; the row's caption; the row's chain of
thought `cot` (text only); `monolithic`: the same sentences as one paragraph without the part labels, as a plain text
(built from the row's FoleyWorld ground truth); `truth`: the plan of the row's ground truth (foleyflow.cot.convert),
as its four-part text (worded as the clip's own CoT, so the text equals `cot`'s) AND, for a generator that follows
plans, its time-aligned track; `auto`: the bundle's automatic planner plans each clip's video (the plan's four-part
text and track, exactly as `generate --cot auto`). The record's settings name the mode and whether the track was used
(`plan_track`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foleyflow.options import GUIDANCE, SAMPLERS

TEXT_MODES = ("none", "caption", "cot", "monolithic", "truth", "auto", "caption+auto")
NEEDS = {"caption": "caption", "cot": "cot", "monolithic": "truth", "truth": "truth", "caption+auto": "caption"}   # the row field a mode reads


def register(sub) -> None:
    p = sub.add_parser("generate-set", help="generate soundtracks for every video of a manifest (for evaluation)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest (id, video, optional caption / cot)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <id>.wav (created if missing)")
    p.add_argument("--split", default=None, help="only rows of this split")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N rows (after --split)")
    p.add_argument("--text", default="none", choices=TEXT_MODES,
                   help="condition on nothing but the video (none, default), the row's caption, its chain of "
                        "thought (cot: an oracle plan as text, FoleyWorld's CoT lists the true onset times), the same "
                        "sentences as one paragraph (monolithic, from the row's truth), the plan of the row's ground "
                        "truth (truth: its four-part text and, when the model follows plans, its time-aligned track), "
                        "or the bundle's planner's plan of each video (auto: text and track, as generate --cot auto; "
                        "caption+auto: the row's caption as the text and the planner's plan as the track only)")
    p.add_argument("--no-video", action="store_true",
                   help="text-to-audio: generate from the text alone (--text caption, cot, monolithic or truth), "
                        "for the video's duration, without showing the model the video")
    p.add_argument("--bundle", default=None, metavar="DIR", help="model bundle (default: the installed default model)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="ODE sampler (default: the bundle's)")
    p.add_argument("--guidance", default=None, choices=GUIDANCE, help="cfg, apg or multi (default: the bundle's; "
                   "see foleyflow generate --help)")
    p.add_argument("--apg-eta", type=float, default=None, metavar="ETA", help="APG's parallel damping (0..1)")
    p.add_argument("--text-scale", type=float, default=None, metavar="W", help="--guidance multi: text weight")
    p.add_argument("--video-scale", type=float, default=None, metavar="W", help="--guidance multi: video weight")
    p.add_argument("--plan-scale", type=float, default=None, metavar="W", help="guidance weight of the plan track "
                   "alone (default: guided with the rest; 1: unamplified)")
    p.add_argument("--seed", type=int, default=0, help="base seed; each clip's is derived from it and the clip id")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    from foleyflow.commands.generate import add_quantize_option

    add_quantize_option(p)
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch (default: torch's)")
    p.add_argument("--overwrite", action="store_true", help="replace <id>.wav files in DIR that generate-set did not "
                   "record as its own")
    from foleyflow.commands.generate import add_stereo_option
    from foleyflow.commands.plan import REFINE_HELP, add_refine_option

    add_stereo_option(p)
    add_refine_option(p, "--text caption / caption+auto: " + REFINE_HELP)
    p.set_defaults(func=run)


def text_condition(row, mode: str):
    """(prompt, cot, plan) of a manifest row under a --text mode; (None, None, None) for none and auto (auto plans
    each video in the loop). truth and monolithic build the plan of the row's ground truth, worded as FoleyWorld
    worded the clip's own CoT (one-line TruthError / PlanError for a bad truth file)."""
    if mode in ("caption", "caption+auto"):       # caption+auto: the planner's track is added in the loop
        return row.caption, None, None
    if mode == "cot":
        return None, row.cot, None
    if mode not in ("truth", "monolithic"):
        return None, None, None
    from foleyflow.commands.generate import plan_condition
    from foleyflow.cot import plan_from_truth, truth_monolithic, truth_wording
    from foleyflow.events import read_truth

    truth = read_truth(row.truth)
    if mode == "monolithic":
        return truth_monolithic(truth), None, None
    return (None, *plan_condition(plan_from_truth(truth), truth_wording(truth)))


def clip_seed(seed: int, clip_id: str) -> int:
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(clip_id.encode())) % (2 ** 63)


RECORD = "generate_set.json"


def bundle_sha256(folder: str | Path) -> str:
    """sha256 over bundle.json and the sha256 of every checkpoint it names (what made the audio)."""
    import hashlib

    from foleyflow.bundle import read_bundle
    from foleyflow.data.cache import file_sha256

    info = read_bundle(folder)
    index = Path(folder) / "bundle.json"
    if not index.is_file():   # a converted MMAudio release (foleyflow.bundle.read_mmaudio_release)
        from foleyflow.models.mmaudio_release import MANIFEST

        index = Path(folder) / MANIFEST
    h = hashlib.sha256(index.read_bytes())
    for role in sorted(info.files):
        h.update(f"{role}={file_sha256(info.files[role])}".encode())
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    import hashlib
    import json

    from foleyflow.commands.generate import DEFAULT_BUNDLE, option_values
    from foleyflow.manifest import read_manifest
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
    if args.no_video and args.text == "none":
        raise FoleyError("--no-video generates from the text alone: give --text caption or --text cot")
    if args.no_video and args.text in ("auto", "caption+auto"):
        raise FoleyError("--text auto plans from each clip's video; it cannot go with --no-video")
    if args.text in NEEDS:
        need = NEEDS[args.text]
        lacking = [r.id for r in rows if not getattr(r, need)]
        if lacking:
            raise FoleyError(f"{len(lacking)} rows have no {need} (e.g. {lacking[0]}); use --text none" +
                             (" (--text monolithic and truth need FoleyWorld's ground truth)" if need == "truth"
                              else ""))
    from foleyflow.fileio import safe_component

    for r in rows:  # ids name files in --out: none may leave it
        safe_component(r.id, f"{args.manifest}: id")
    bundle = args.bundle or (str(DEFAULT_BUNDLE) if (DEFAULT_BUNDLE / "bundle.json").is_file() else None)
    if bundle is None:
        raise FoleyError(f"the default model is missing from {DEFAULT_BUNDLE} (a broken install?); give --bundle DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FoleyError(f"--out {out} is a file, not a folder")
    from foleyflow.commands.generate import check_seed

    check_seed(args.seed)
    if args.text in ("auto", "caption+auto"):
        from foleyflow.planning import bundle_planner_path

        bundle_planner_path(bundle)       # a bundle without a planner: one line, before anything is generated
    texts = {r.id: text_condition(r, args.text) for r in rows}   # {id: (prompt, cot, plan)}; auto: planned later
    if args.refine is not None:
        if args.text not in ("caption", "caption+auto"):
            raise FoleyError("--refine rewrites the captions: give --text caption or caption+auto")
        from foleyflow.commands.plan import refiner

        r_ = refiner(args.refine)
        texts = {k: (r_.refine_text(p), c, pl) for k, (p, c, pl) in texts.items()}
        changed = sum(texts[r.id][0] != r.caption for r in rows)
        print(f"--refine {args.refine:g}: {changed} of {len(rows)} captions rewritten")
    # what makes a clip's audio: a clip is resumed only if its recorded key is this one
    sha = bundle_sha256(bundle)
    settings = {"manifest": str(args.manifest), "split": args.split, "text": args.text, "bundle": str(bundle),
                "bundle_sha256": sha, **values, "seed": args.seed, "precision": args.precision, "device": args.device,
                **({"quantize": args.quantize} if args.quantize else {}),
                **({"stereo": True} if args.stereo else {}), **({"no_video": True} if args.no_video else {}),
                **({"refine": args.refine} if args.refine is not None else {})}

    key_settings = dict(settings)   # fixed before the record gains the resolved options, so resumed keys match

    def clip_key(r) -> str:
        what = {k: v for k, v in key_settings.items() if k not in ("manifest", "split", "bundle")}
        prompt, cot, plan_ = texts[r.id]
        from foleyflow.cot import plan_to_dict

        text = prompt if prompt is not None else cot
        what.update(id=r.id, video=str(Path(r.video).resolve()), text=text,
                    **({"plan": plan_to_dict(plan_)} if plan_ is not None else {}))
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    from foleyflow.commands.itemloop import Item, plan, read_record, report_failures, run_items

    durations = {}
    if args.no_video:  # text-to-audio for each clip's duration (probed, so the audio lines up with the reference)
        from foleyflow import media

        infos = {r.id: media.probe(r.video) for r in rows}
        durations = {k: (i.video.duration_s if i.video is not None else i.duration_s) for k, i in infos.items()}
    planner = {}    # --text auto: the bundle's planner, loaded once after the outputs are checked

    def planned(video: str):
        from foleyflow.commands.generate import auto_cot

        cot, plan_ = auto_cot(video, bundle, planner["vp"])
        return (None, plan_) if args.text == "caption+auto" else (cot, plan_)    # caption+auto: the track only

    items = [Item(r.id, out / f"{r.id}.wav", clip_key(r), video=None if args.no_video else r.video,
                  duration_s=durations.get(r.id), prompt=texts[r.id][0], cot=texts[r.id][1], plan=texts[r.id][2],
                  condition=(lambda v=r.video: planned(v)) if args.text in ("auto", "caption+auto") else None,
                  values={"seed": clip_seed(args.seed, r.id)}) for r in rows]
    made = read_record(out / RECORD)
    todo = plan(items, made, command="generate-set", record=out / RECORD, overwrite=args.overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FoleyError(f"cannot create the output folder {out}: {e.strerror}") from None
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from foleyflow.pipeline import FoleyPipeline

    pipe = FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision,
                                     quantize=args.quantize)
    if not pipe.trained:
        print(f"warning: the bundle '{pipe.name}' is UNTRAINED (random weights)", file=sys.stderr)
    if args.text in ("auto", "caption+auto") and todo:
        from foleyflow.planning import load_video_planner

        planner["vp"] = load_video_planner(bundle, pipeline=pipe)   # its encoders; each clip is encoded once
    if args.text in ("truth", "auto", "caption+auto"):
        settings["plan_track"] = pipe.follows_plan
        if not pipe.follows_plan:
            print(f"warning: the bundle '{pipe.name}' has no plan pathway: the plans reach it only as their "
                  "four-part text", file=sys.stderr)
    options = pipe.options(**values)   # the settings every clip is generated with (its seed: clip_seed)
    # the record names every resolved option (e.g. the bundle's steps when --steps is not given)
    settings.update({k: v for k, v in options.as_record().items() if k != "seed"}, cfg=options.cfg_scale,
                    clip_seed="crc32 of the id, see clip_seed")
    from foleyflow.fileio import atomic_write_text

    def save_record(wall_s: float | None = None) -> None:
        atomic_write_text(out / RECORD, json.dumps({
            "settings": {**settings, "precision": pipe.precision}, "clips": len(rows), "generated_now": len(todo),
            "wall_s": None if wall_s is None else round(wall_s, 2),
            "timings_s": {k: round(v, 2) for k, v in summary.timings_s.items()}, "made": made}, indent=1))

    from foleyflow.commands.itemloop import RunSummary

    summary = RunSummary()   # filled as the loop goes, so every saved record has the timings so far
    run_items(pipe, todo, made, save_record, options=options, command="generate-set", summary=summary,
              stereo=args.stereo)
    save_record(summary.wall_s)
    done = len(summary.generated)
    per = f", {summary.wall_s / len(todo):.2f} s per clip" if todo else ""
    print(f"wrote {done} clips to {out} ({len(rows) - len(todo)} already there{per})")
    report_failures(summary, len(rows), "generate-set")
    return 0
