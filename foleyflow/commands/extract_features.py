"""`foleyflow extract-features MANIFEST --out DIR`: visual, sync and text features of every clip, once, for training
the generator (format in docs/caches.md; library code in foleyflow.data.features)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("extract-features", help="compute the visual, sync and text features of a manifest's clips "
                       "into a features cache (for training)",
                       description="Writes a features cache: per clip window, semantic frame features at 8 fps, sync "
                                   "tokens at 25 fps, and caption and chain-of-thought token features padded to one "
                                   "token count; the cache records the encoder checkpoints (sha256) that made it. "
                                   "Clips longer than --duration are cut into windows; shorter ones are padded "
                                   "(last frame repeated). See docs/caches.md.")
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest (id, video, optional caption / cot)")
    p.add_argument("--out", required=True, help="cache folder to create")
    p.add_argument("--semantic-encoder", required=True, metavar="CKPT", help="semantic_av checkpoint")
    p.add_argument("--sync-encoder", required=True, metavar="CKPT", help="sync_av checkpoint")
    p.add_argument("--duration", type=float, default=8.0, metavar="S", help="window (clip) duration, default 8")
    p.add_argument("--text-budget", default="256", metavar="N[:P]",
                   help="tokens of a caption (N, at most 256) and of each of the four CoT parts (P, default N/4; or "
                        "four budgets S,T,A,Sp for semantic, temporal, aesthetic, spatial); every text field is padded "
                        "to max(N, sum of the part budgets) tokens, the generator's text_len (default 256)")
    p.add_argument("--text-overflow", default="error", choices=("error", "truncate"),
                   help="a text over its budget stops the run (error, default) or is cut to it (truncate); cut texts "
                        "are counted in the summary")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.set_defaults(func=run)


def parse_budget(text: str, overflow: str = "error"):
    from foleyflow.errors import ConfigError
    from foleyflow.models.text_encoder import TextEncoderConfig

    try:
        parts = [int(x) for x in text.split(":")[0:1]] + [[int(y) for y in x.split(",")] for x in text.split(":")[1:]]
    except ValueError:
        raise ConfigError(f"--text-budget must be N, N:P or N:S,T,A,Sp (integers), got {text!r}") from None
    if len(parts) not in (1, 2) or (len(parts) == 2 and len(parts[1]) not in (1, 4)):
        raise ConfigError(f"--text-budget must be N, N:P or N:S,T,A,Sp, got {text!r}")
    n = parts[0]
    p = (parts[1][0] if len(parts[1]) == 1 else parts[1]) if len(parts) == 2 else max(3, n // 4)
    return TextEncoderConfig(seq_len=n, part_seq_len=p, overflow=overflow)


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from tqdm import tqdm

    from foleyflow.data.features import extract_features
    from foleyflow.data.manifest import read_manifest

    import warnings

    from foleyflow.models.text_encoder import TextTruncationWarning

    text_cfg = parse_budget(args.text_budget, args.text_overflow)
    n = len(read_manifest(args.manifest))
    bar = tqdm(total=n, desc="extract-features", unit="clip", file=sys.stderr, disable=None, dynamic_ncols=True)
    t0 = time.time()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TextTruncationWarning)
            out = extract_features(args.manifest, args.out, args.semantic_encoder, args.sync_encoder,
                                   duration_s=args.duration, text_cfg=text_cfg, device=args.device,
                                   progress=lambda done, total: bar.update(done - bar.n))
    finally:
        bar.close()
    from foleyflow.data.cache import Cache

    cache = Cache(out)
    c = cache.info["counts"]
    print(f"wrote {out}: {c['windows']} windows from {c['clips']} clips ({c['padded']} padded, {c['no_video']} "
          f"without video, {c['no_caption']} without caption, {c['no_cot']} without CoT), text_len "
          f"{cache.info['text_len']}, in {time.time() - t0:.1f} s")
    cut = [w for w in caught if issubclass(w.category, TextTruncationWarning)]
    if cut:
        print(f"{len(cut)} texts were longer than their budget and were cut to it (--text-overflow truncate), e.g. "
              f"{cut[0].message}")
    return 0
