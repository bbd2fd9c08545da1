"""`foleyflow world make|preview`: generate FoleyWorld clips, and look at them."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("world", help="FoleyWorld: make procedural audio-visual clips with exact ground truth",
                              description="FoleyWorld: a procedural audio-visual world with exact ground truth.")
    sub = p.add_subparsers(dest="world_command", metavar="ACTION")
    m = sub.add_parser("make", help="make N clips of a split into a folder (mp4 + wav + JSON + manifest)")
    m.add_argument("--out", required=True, help="output folder (outside the source tree)")
    m.add_argument("--split", required=True, help="train, val, test, evaltrain, test-hard or test-offscreen")
    m.add_argument("--n", required=True, type=int, help="number of clips")
    m.add_argument("--seed", type=int, default=0, help="starting point inside the split's seed range (default 0)")
    m.add_argument("--config", default=None, help="WorldConfig YAML file")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set size=256 (repeatable)")
    m.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    m.add_argument("--shard-size", type=int, default=0, metavar="K",
                   help="also pack the split into WebDataset-style tar shards of K clips in OUT/shards/")
    m.set_defaults(func=_make)
    v = sub.add_parser("preview", help="write a PNG contact sheet (frames, spectrogram, events) for a few clips")
    v.add_argument("dir", help="a folder made by `world make`")
    v.add_argument("-o", "--output", default=None, help="PNG path (default DIR/preview.png)")
    v.add_argument("--clips", type=int, default=4, help="how many clips to show (default 4)")
    v.add_argument("--split", default=None, help="only clips of this split")
    v.set_defaults(func=_preview)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    for parser in (p, m, v):
        _one_line_errors(parser)


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Bad arguments print one line, `error: <prog>: <message>`, and exit 2 (no usage block)."""
    import sys

    def error(message: str):
        print(f"error: {parser.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error


def _make(args: argparse.Namespace) -> int:
    import sys
    import time

    from foleyflow.config import load_config
    from foleyflow.errors import ConfigError
    from foleyflow.world.config import WorldConfig, split_seed_range
    from foleyflow.world.make import make_split, write_shards

    split_seed_range(args.split)          # a clear error for an unknown split before anything else
    if args.shard_size < 0:
        raise ConfigError(f"--shard-size must be 0 (no shards) or more, got {args.shard_size}")
    cfg = load_config(WorldConfig, args.config, args.overrides)
    _check_out_folder(args.out)
    t0 = time.time()
    rows = make_split(args.out, args.split, args.n, cfg, seed=args.seed, workers=args.workers,
                      progress=sys.stderr.isatty())
    dt = time.time() - t0
    print(f"made {len(rows)} {args.split} clips in {args.out} ({dt:.1f} s, {len(rows) / max(dt, 1e-9):.2f} clips/s); "
          f"manifest {args.out}/manifest.jsonl")
    if args.shard_size:
        shards = write_shards(args.out, args.split, args.shard_size)
        print(f"wrote {len(shards)} shards in {args.out}/shards")
    return 0


def _check_out_folder(out: str) -> None:
    """--out must be (or become) a writable folder: a one-line error before any clip is made."""
    import os
    from pathlib import Path

    from foleyflow.errors import FoleyError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FoleyError(f"--out {out} is a file, not a folder")
    parent = path.absolute()  # nothing is created here: make_split checks the folder's place first
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise FoleyError(f"cannot create the output folder {out}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FoleyError(f"cannot write into {parent}: permission denied")


def _preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    from foleyflow.errors import FoleyError
    from foleyflow.world.preview import write_preview

    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise FoleyError(f"{args.dir} is not a folder made by `world make`")
    if not 1 <= args.clips <= 64:
        raise FoleyError(f"--clips must be between 1 and 64, got {args.clips}")
    if args.output is not None and Path(args.output).is_dir():
        raise FoleyError(f"cannot write {args.output}: it is a folder")
    if args.output is not None and Path(args.output).suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        # (also keeps -o from naming one of the clip's files: manifest, json, wav, mp4)
        raise FoleyError(f"-o {args.output}: the preview is an image (.png, .jpg, .pdf or .svg)")

    out = write_preview(args.dir, args.output or Path(args.dir) / "preview.png", num_clips=args.clips,
                        split=args.split)
    print(f"wrote {out}")
    return 0
