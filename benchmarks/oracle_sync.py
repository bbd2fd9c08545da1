"""Oracle timing: train and sample the generator with ground-truth contacts in place of the sync features.

How much of the generator's timing error is the sync encoder's? This replaces every sync token by what the sync
encoder's contact head is trained to predict, taken from FoleyWorld's ground truth: channel 0 is 1 where a visible,
audible discrete contact starts in the token's frames, channel 1 the contact's pan (-1..1), the other channels 0.
A generator trained and sampled on these features shows how far timing and pan go with perfect visual timing.

    # a features cache with oracle sync tokens (the other fields are copied)
    python benchmarks/oracle_sync.py cache CACHE_IN CACHE_OUT --manifest /data/foleyworld/train2400.jsonl
    # generate a split with a bundle whose generator was trained on such a cache (like generate-set)
    python benchmarks/oracle_sync.py generate /data/foleyworld/manifest.jsonl --split test --limit 100 \
        --bundle BUNDLE --out eval/gen_oracle
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def oracle_tokens(truth: str | Path, start_s: float, num_tokens: int, sync_cfg, dim: int) -> torch.Tensor:
    """(num_tokens, dim) oracle sync tokens of a window starting at start_s."""
    from foleyflow.data.av_clips import visible_onsets
    from foleyflow.models.av_ssl import contact_targets

    segments = num_tokens // sync_cfg.tokens_per_segment
    contact, pan = contact_targets(visible_onsets(truth), start_s, segments, sync_cfg)
    out = torch.zeros(num_tokens, dim)
    out[:, 0], out[:, 1] = contact, pan
    return out


def _truth_paths(manifest: str) -> dict[str, Path]:
    from foleyflow.manifest import read_manifest

    return {r.id: Path(r.truth) for r in read_manifest(manifest) if r.truth}


def make_cache(args) -> None:
    from tqdm import tqdm

    from foleyflow.bundle import read_bundle
    from foleyflow.data.cache import Cache, CacheWriter
    from foleyflow.errors import FoleyError
    from foleyflow.models.av_ssl import load_sync_encoder

    src = Cache(args.cache_in, kind="features")
    sync_cfg = load_sync_encoder(read_bundle(args.bundle).files["sync_encoder"]).cfg
    truths = _truth_paths(args.manifest)
    windows = src.info["windows"]
    missing = [i for i in src.ids if windows[i][0] not in truths]
    if missing:
        raise FoleyError(f"{len(missing)} cached clips have no truth file in {args.manifest} (e.g. {missing[0]})")
    producers = dict(src.producers)
    producers["sync_encoder"] = {"kind": "oracle_contacts", "sha256": "", "path": "ground truth (oracle_sync.py)"}
    fields = {f: src.load(f) for f in src.fields}
    n_tok, dim = fields["sync"].shape[1:]
    writer = CacheWriter(args.cache_out, "features", producers, dtype=fields["sync"].dtype)
    for k, clip_id in enumerate(tqdm(src.ids, desc="oracle cache", unit="clip", file=sys.stderr)):
        clip, start = windows[clip_id]
        row = {f: t[k] for f, t in fields.items()}
        if float(row["has_video"].reshape(-1)[0]) > 0:  # windows without video keep their (zero) sync tokens
            row["sync"] = oracle_tokens(truths[clip], float(start), n_tok, sync_cfg, dim)
        writer.add(clip_id, row)
    writer.close(info=src.info, extras=src.extras())
    print(f"wrote {len(src.ids)} windows with oracle sync tokens to {args.cache_out}")


def generate(args) -> None:
    from tqdm import tqdm

    from foleyflow.commands.generate_set import clip_seed
    from foleyflow.manifest import read_manifest
    from foleyflow.errors import FoleyError
    from foleyflow.media import probe, write_audio
    from foleyflow.pipeline import FoleyPipeline

    def with_oracle(truth: Path, video_start_s: float):
        """An `edit_conditions` for FoleyPipeline.generate: the window's sync tokens replaced by oracle ones."""
        def edit(c, window):
            n, dim = c.sync.shape[1:]
            oracle = oracle_tokens(truth, video_start_s + window.start_s, n, pipe.sync.cfg, dim)
            return dataclasses.replace(c, sync=oracle[None].to(c.sync.dtype))
        return edit

    torch.set_num_threads(args.threads)
    rows = [r for r in read_manifest(args.manifest) if r.split == args.split and r.video and r.truth][:args.limit]
    if not rows:
        raise FoleyError(f"{args.manifest}: no rows with video and truth in split '{args.split}'")
    pipe = FoleyPipeline.from_bundle(args.bundle)
    options = pipe.options(steps=args.steps, cfg_scale=args.cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for r in tqdm(rows, desc="oracle generate", unit="clip", file=sys.stderr):
        if (out / f"{r.id}.wav").is_file():
            continue
        kw = {"prompt": r.caption} if args.text == "caption" else {}
        res = pipe.generate(r.video, options=options.replace(seed=clip_seed(args.seed, r.id)),
                            edit_conditions=with_oracle(Path(r.truth), probe(r.video).video.start_s), **kw)
        write_audio(out / f".{r.id}.tmp.wav", res.audio, res.sample_rate)
        (out / f".{r.id}.tmp.wav").replace(out / f"{r.id}.wav")
    settings = {**vars(args), **options.as_record(), "seed": args.seed, "oracle_sync": True}
    (out / "generate_set.json").write_text(json.dumps({"settings": settings}, indent=1, default=str))
    print(f"wrote {len(rows)} clips to {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="copy a features cache with oracle sync tokens")
    c.add_argument("cache_in")
    c.add_argument("cache_out")
    c.add_argument("--manifest", required=True, help="the manifest the cache was made from (its truth files)")
    c.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "foleyflow/assets/default"),
                   help="the token layout comes from this bundle's sync encoder")
    g = sub.add_parser("generate", help="generate a split with oracle sync tokens")
    g.add_argument("manifest")
    g.add_argument("--split", default="test")
    g.add_argument("--limit", type=int, default=100)
    g.add_argument("--bundle", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--text", choices=["caption", "none"], default="caption")
    g.add_argument("--steps", type=int, default=None, help="default: the bundle's")
    g.add_argument("--cfg", type=float, default=None, help="default: the bundle's")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.cmd == "generate" and (args.limit < 1 or args.threads < 1):
        p.error("--limit and --threads must be at least 1")
    make_cache(args) if args.cmd == "cache" else generate(args)


if __name__ == "__main__":
    from foleyflow.errors import FoleyError

    try:
        main()
    except FoleyError as e:
        raise SystemExit(f"error: {e}") from None
