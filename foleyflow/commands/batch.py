"""`foleyflow batch INPUT --out DIR`: generate soundtracks for a folder of videos or for the rows of a CSV file,
loading the models once. Resumable, with a progress bar and a summary of the failures at the end.

INPUT is a folder (every file directly inside it whose suffix is a video's: .mp4 .mov .mkv .m4v .webm .avi, in name
order; each gives DIR/<stem>.mp4 with the generated soundtrack and DIR/<stem>.wav), or a CSV file with a header
naming some of the columns `video, prompt, negative, cot, seed, steps, cfg, duration, output` (unknown columns are
an error). Per row: `video` (relative paths are relative to the CSV's folder; empty = text-only, then `duration` in
seconds is required), `prompt` or `cot` (a chain of thought in FoleyWorld's format, `Semantic: ... Temporal: ...`),
`negative`, `seed`, `steps`, `cfg` (empty = the command line's), `output` (a path inside DIR: `.wav` for audio only,
`.mp4`/`.mov`/`.mkv` for the video plus the .wav beside it; empty = `<video stem>.mp4`, or `row<N>.wav` for a
text-only row). Options given on the command line apply to every row that leaves them empty. `--refine` rewrites
every prompt's unknown sound words onto the model's vocabulary (docs/cot.md) before the item's key is made.

Seeds: a row without one gets a seed derived from --seed and the item's id (its output path inside DIR, crc32, as in
`generate-set`), so an item's audio does not depend on the other items. Resume: DIR/batch.json records each item
this command made (a key of its inputs and settings and the sha256 of its files); a re-run skips items whose record
still matches and refuses existing files it did not record (unless --overwrite). The rows are checked before any
model loads; a video that is missing or unreadable fails only its item: the others are generated, the failures are
listed at the end, and the exit code is then 2. One implementation with `generate-set` (foleyflow.commands.itemloop).

Plans: with a bundle that plans by default (the default model) or `--cot auto`, each video row without a cot is
planned by the bundle's planner first (foleyflow.planning.default_plan, as `foleyflow generate VIDEO`: a prompt stays
the text and the plan gives the timing; a video too short to plan goes without); `--cot none` turns it off.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foleyflow.options import GUIDANCE, SAMPLERS

RECORD = "batch.json"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".webm", ".avi")
COLUMNS = ("video", "prompt", "negative", "cot", "seed", "steps", "cfg", "duration", "output")
OUT_SUFFIXES = (".wav", ".mp4", ".mov", ".mkv")


def register(sub) -> None:
    p = sub.add_parser("batch", help="generate soundtracks for a folder of videos or the rows of a CSV file",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("input", metavar="INPUT", help="a folder of videos, or a CSV file (see the columns below)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs (created if missing)")
    p.add_argument("--prompt", default=None, help="text for rows without one (and for every video of a folder)")
    p.add_argument("--negative", default=None, help="negative prompt for rows without one")
    from foleyflow.commands.plan import REFINE_HELP, add_refine_option

    add_refine_option(p, "every prompt: " + REFINE_HELP)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="ODE sampler (default: the bundle's)")
    p.add_argument("--guidance", default=None, choices=GUIDANCE, help="guidance (default: the bundle's)")
    p.add_argument("--seed", type=int, default=0, help="base seed: an item without a seed gets one derived from it "
                   "and the item's output name")
    p.add_argument("--cot", default=None, choices=("auto", "none"), help="video rows without a cot: 'auto' plans "
                   "each video with the bundle's planner (a prompt stays the text, the plan gives the timing), "
                   "'none' does not (default: the bundle's choice; the default model plans, as `generate VIDEO`)")
    p.add_argument("--wav-only", action="store_true", help="write only the .wav of each video (no muxed video)")
    p.add_argument("--bundle", default=None, metavar="DIR", help="model bundle (default: the installed default model)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    from foleyflow.commands.generate import add_quantize_option

    add_quantize_option(p)
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch (default: torch's)")
    p.add_argument("--overwrite", action="store_true", help="replace files in DIR that batch did not record as its "
                   "own")
    p.set_defaults(func=run)


def _fail(msg: str):
    from foleyflow.errors import FoleyError
    raise FoleyError(msg)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a batch CSV ({column: text}, empty cells left out); one-line FoleyError for a bad file."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        _fail(f"{path}: not a UTF-8 text file")
    except OSError as e:
        _fail(f"cannot read {path}: {e.strerror}")
    try:
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        unknown = [h for h in header if h not in COLUMNS]
        if not header or unknown:
            _fail(f"{path}: unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(COLUMNS)})"
                  if unknown else f"{path}: no header row (columns: {', '.join(COLUMNS)})")
        rows = []
        for raw in reader:
            if None in raw:
                _fail(f"{path} line {reader.line_num}: more cells than columns")
            rows.append({k.strip(): v.strip() for k, v in raw.items() if k and v is not None and v.strip()})
    except csv.Error as e:
        _fail(f"{path}: not a valid CSV file ({e})")
    if not rows:
        _fail(f"{path}: no rows")
    return rows


def _number(row: dict, name: str, kind, where: str):
    if name not in row:
        return None
    try:
        return kind(row[name])
    except ValueError:
        _fail(f"{where}: {name} must be {'an integer' if kind is int else 'a number'}, got {row[name]!r}")


def build_items(args: argparse.Namespace, out: Path):
    """Items (foleyflow.commands.itemloop.Item) of INPUT, every row checked (one-line FoleyError naming it); each
    key covers the item's inputs and settings (run() adds the run's settings and the bundle's sha256)."""
    from foleyflow.commands.generate_set import clip_seed
    from foleyflow.commands.itemloop import Item, item_key
    from foleyflow.errors import FoleyError
    from foleyflow.fileio import is_inside
    from foleyflow.options import canonical
    from foleyflow.pipeline import check_duration

    src = Path(args.input)
    if src.is_dir():
        videos = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                        and not p.name.startswith("."))
        if not videos:
            _fail(f"{src}: no video files ({' '.join(VIDEO_SUFFIXES)})")
        rows, base, where = [{"video": str(p)} for p in videos], src, str(src)
    elif src.is_file():
        rows, base, where = read_rows(src), src.parent, str(src)
    else:
        _fail(f"{src}: no such folder or CSV file")
    from foleyflow.commands.plan import refiner

    refine = refiner(args.refine)            # None without --refine; one line for a similarity outside (0, 1]
    refined: dict[str, str] = {}              # each distinct prompt is refined once
    items, seen = [], {}
    for n, row in enumerate(rows, start=1):
        at = f"{where} row {n}" if src.is_file() else f"{row['video']}"
        video = str(base / row["video"]) if "video" in row else None
        duration = _number(row, "duration", float, at)
        if video is None and duration is None:
            _fail(f"{at}: give a video or a duration (text-only)")
        if video is not None and duration is not None:
            _fail(f"{at}: duration is for text-only rows; with a video the soundtrack spans the whole video")
        if "prompt" in row and "cot" in row:
            _fail(f"{at}: give a prompt or a cot, not both")
        try:
            if duration is not None:
                check_duration(duration)
            values = canonical({k: v for k, v in {"seed": _number(row, "seed", int, at),
                                                  "steps": _number(row, "steps", int, at),
                                                  "cfg_scale": _number(row, "cfg", float, at),
                                                  "negative": row.get("negative")}.items() if v is not None})
            cot = None
            if "cot" in row:
                from foleyflow.conditioning import cot_parts
                cot = cot_parts(row["cot"])
        except FoleyError as e:
            _fail(f"{at}: {e}")
        name = row.get("output") or (f"{Path(video).stem}{'.wav' if args.wav_only else '.mp4'}" if video
                                     else f"row{n}.wav")
        target = out / name
        if Path(name).is_absolute() or not is_inside(target, out) or target.resolve() == out.resolve():
            _fail(f"{at}: output {name!r} must be a file inside --out {out}")
        if target.suffix.lower() not in OUT_SUFFIXES:
            _fail(f"{at}: output {name!r} must end in {', '.join(OUT_SUFFIXES)}")
        if target.suffix.lower() != ".wav" and video is None:
            _fail(f"{at}: a text-only row writes a .wav, not {name!r}")
        wav = target.with_suffix(".wav")
        item_id = wav.relative_to(out).as_posix()
        if item_id in seen:
            _fail(f"{at}: output {name!r} is also the output of {seen[item_id]}")
        seen[item_id] = at
        prompt = row.get("prompt", args.prompt if cot is None else None)
        if refine is not None and prompt:
            if prompt not in refined:
                refined[prompt] = refine.refine_text(prompt)
            prompt = refined[prompt]
        values.setdefault("seed", clip_seed(args.seed, item_id))
        key = item_key({"id": item_id, "video": str(Path(video).resolve()) if video else None,
                        "prompt": prompt, "cot": cot, "duration": duration, "values": values,
                        "video_out": target.suffix.lower() != ".wav"})
        items.append(Item(item_id, wav, key, video=video, prompt=prompt, cot=cot, duration_s=duration,
                          values=values, video_out=target if target.suffix.lower() != ".wav" else None))
    return items


def run(args: argparse.Namespace) -> int:
    import json

    from foleyflow.commands.generate import DEFAULT_BUNDLE, check_seed, option_values
    from foleyflow.commands.generate_set import bundle_sha256
    from foleyflow.commands.itemloop import RunSummary, item_key, plan, read_record, report_failures, run_items
    from foleyflow.fileio import atomic_write_text
    from foleyflow.outputs import own_tag

    check_seed(args.seed)
    values = option_values(argparse.Namespace(**{"apg_eta": None, **vars(args), "seed": None}))
    if not 0 <= args.threads <= 1024:
        _fail(f"--threads must be between 0 (default) and 1024, got {args.threads}")
    bundle = args.bundle or (str(DEFAULT_BUNDLE) if (DEFAULT_BUNDLE / "bundle.json").is_file() else None)
    if bundle is None:
        _fail(f"the default model is missing from {DEFAULT_BUNDLE} (a broken install?); give --bundle DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file, not a folder")
    items = build_items(args, out)   # every row checked before anything is loaded
    from foleyflow.planning import bundle_planner_path, plans_by_default

    planning = args.cot == "auto" or (args.cot is None and plans_by_default(bundle))
    if args.cot == "auto":
        bundle_planner_path(bundle)      # one line when the bundle has no planner, before anything is loaded
    settings = {"input": str(args.input), "bundle": str(bundle), "bundle_sha256": bundle_sha256(bundle), **values,
                **({"plan": "auto"} if planning else {}),
                "seed": args.seed, "precision": args.precision, "device": args.device,
                **({"quantize": args.quantize} if args.quantize else {})}
    base_key = {k: v for k, v in settings.items() if k not in ("input", "bundle", "seed")}
    for it in items:
        it.key = item_key({"run": base_key, "item": it.key})
    made = read_record(out / RECORD)
    todo = plan(items, made, command="batch", record=out / RECORD, overwrite=args.overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"cannot create the output folder {out}: {e.strerror}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from foleyflow.pipeline import FoleyPipeline

    pipe = FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision,
                                     quantize=args.quantize)
    if not pipe.trained:
        print(f"warning: the bundle '{pipe.name}' is UNTRAINED (random weights)", file=sys.stderr)
    if planning and any(it.video is not None and it.cot is None for it in todo):
        from foleyflow.planning import default_plan, load_video_planner

        vp = load_video_planner(bundle, pipeline=pipe)     # the pipeline's encoders: each video is encoded once
        for it in todo:
            if it.video is not None and it.cot is None:
                it.condition = lambda v=it.video, p=it.prompt: default_plan(vp, v, p)[:2]
    options = pipe.options(**values)
    settings.update({k: v for k, v in options.as_record().items() if k != "seed"}, precision=pipe.precision)
    summary = RunSummary()

    def save_record(wall_s: float | None = None) -> None:
        atomic_write_text(out / RECORD, json.dumps({
            "settings": settings, "items": len(items), "generated_now": len(todo),
            "wall_s": None if wall_s is None else round(wall_s, 2),
            "failures": [{"id": i, "error": e} for i, e in summary.failures],
            "timings_s": {k: round(v, 2) for k, v in summary.timings_s.items()}, "made": made}, indent=1))

    run_items(pipe, todo, made, save_record, options=options, command="batch", tag=own_tag("batch"),
              summary=summary)
    save_record(summary.wall_s)
    print(f"wrote {len(summary.generated)} items to {out} ({len(items) - len(todo)} already there, "
          f"{len(summary.failures)} failed)")
    report_failures(summary, len(items), "batch")
    return 0
