"""`foleyflow extract-features MANIFEST --out DIR`: visual, sync and text features of every clip, once, for training
the generator (format in docs/caches.md; library code in foleyflow.data.features)."""
from __future__ import annotations

import argparse
from pathlib import Path


DEFAULT_BUDGET = "64:64,256,64,96"


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
    # The defaults are the default model's (docs/default_model.md): FoleyWorld's own clips must pass them. Its
    # chain of thought lists every onset in the Temporal part (up to ~320 tokens), so a few long ones are cut to 256;
    # the summary counts them (never silent).
    p.add_argument("--text-budget", default=DEFAULT_BUDGET, metavar="N[:P]",
                   help="tokens of a caption (N, at most 256) and of each of the four CoT parts (P, default N/4; or "
                        "four budgets S,T,A,Sp for semantic, temporal, aesthetic, spatial); every text field is padded "
                        f"to max(N, sum of the part budgets) tokens, the generator's text_len (default {DEFAULT_BUDGET}"
                        ", 480 tokens: the default model's)")
    p.add_argument("--text-overflow", default="truncate", choices=("error", "truncate", "split"),
                   help="a text over its budget stops the run (error) or is cut to it (truncate, default), or a plain "
                        "text is encoded in pieces of whole sentences (split); cut texts are counted in the summary")
    p.add_argument("--monolithic", action="store_true",
                   help="also cache the field 'monolithic': each clip's ground-truth chain of thought as one paragraph "
                        "without part labels, encoded as a plain text (issue 19's ablation; needs every row's truth; "
                        "use --text-overflow split and a caption budget of 256 so that long paragraphs are kept)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N processes of one CPU thread each, on parts of the manifest, merged at the end (default 1)")
    p.add_argument("--progress-file", default=None, help=argparse.SUPPRESS)  # used by --workers children
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
    import warnings

    from tqdm import tqdm

    from foleyflow.data.features import extract_features
    from foleyflow.manifest import read_manifest
    from foleyflow.models.text_encoder import TextTruncationWarning

    text_cfg = parse_budget(args.text_budget, args.text_overflow)
    if args.monolithic and not args.progress_file and args.text_overflow != "split":
        print("warning: --monolithic paragraphs are often longer than the caption budget; without --text-overflow "
              "split (and e.g. --text-budget 256:64,256,64,96) many are cut", file=sys.stderr)
    n = len(read_manifest(args.manifest))
    if args.workers < 1 or args.workers > 64:
        from foleyflow.errors import ConfigError
        raise ConfigError(f"--workers must be in [1, 64], got {args.workers}")
    t0 = time.time()
    if args.workers > 1:
        out, caught = _run_workers(args, n)
    else:
        bar = tqdm(total=n, desc="extract-features", unit="clip", file=sys.stderr,
                   disable=True if args.progress_file else None, dynamic_ncols=True)

        def progress(done, total):
            bar.update(done - bar.n)
            if args.progress_file:
                Path(args.progress_file).write_text(str(done))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TextTruncationWarning)
                out = extract_features(args.manifest, args.out, args.semantic_encoder, args.sync_encoder,
                                       duration_s=args.duration, text_cfg=text_cfg, device=args.device,
                                       progress=progress, monolithic=args.monolithic)
        finally:
            bar.close()
        for w in caught:  # other warnings are shown as usual; cut texts are counted in the summary below
            if not issubclass(w.category, TextTruncationWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        caught = [str(w.message) for w in caught if issubclass(w.category, TextTruncationWarning)]
    from foleyflow.data.cache import Cache

    cache = Cache(out)
    c = cache.info["counts"]
    print(f"wrote {out}: {c['windows']} windows from {c['clips']} clips ({c['padded']} padded, {c['no_video']} "
          f"without video, {c['no_caption']} without caption, {c['no_cot']} without CoT), text_len "
          f"{cache.info['text_len']}, in {time.time() - t0:.1f} s")
    if caught:
        print(f"{len(caught)} texts were longer than their budget and were cut to it (--text-overflow "
              f"{args.text_overflow}), e.g. "
              f"{caught[0]}")
    if args.progress_file:
        Path(args.progress_file).with_suffix(".cut").write_text("\n".join(caught))
    return 0


def _run_workers(args: argparse.Namespace, n: int):
    """Runs `--workers` child processes (one thread each) on interleaved parts of the manifest, then merges their
    caches into --out. Returns (out, messages of the texts that were cut)."""
    import json
    import shutil

    from foleyflow.data.cache import INDEX
    from foleyflow.manifest import read_manifest
    from foleyflow.errors import FoleyError

    for what, path in (("semantic encoder", args.semantic_encoder), ("sync encoder", args.sync_encoder)):
        if not Path(path).is_file():  # before any worker starts
            raise FoleyError(f"{what} checkpoint not found: {path}")
    out = Path(args.out)
    if (out / INDEX).exists():
        raise FoleyError(f"a cache already exists in {out}; choose another folder or delete it")
    import tempfile

    entries = read_manifest(args.manifest)            # absolute paths (checked before the parts folder exists)
    if args.monolithic:
        from foleyflow.data.features import monolithic_texts

        monolithic_texts(entries)                     # a row without truth fails here, before any worker starts
    raw = [json.loads(line) for line in Path(args.manifest).read_text().splitlines() if line.strip()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # unique per run (two runs never share it) and removed whatever happens (finally below)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.parts-", dir=out.parent))
    except OSError as e:
        raise FoleyError(f"cannot create a work folder next to {out}: {e.strerror}") from None
    try:
        return _run_parts(args, n, out, work, raw, entries)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_parts(args, n, out, work, raw, entries):
    """The body of _run_workers: runs the children on parts of the manifest in `work` and merges their caches."""
    import json
    import os
    import subprocess
    import sys
    import time

    from tqdm import tqdm

    from foleyflow.data.cache import merge_caches
    from foleyflow.errors import FoleyError

    k = min(args.workers, n)
    procs = []
    for i in range(k):
        part = work / f"part{i}.jsonl"
        rows = []
        for r, e in zip(raw[i::k], entries[i::k]):
            rows.append({**r, **{f: getattr(e, f) for f in ("video", "audio", "truth") if getattr(e, f, None)}})
        part.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cmd = [sys.executable, "-m", "foleyflow.cli", "extract-features", str(part), "--out", str(work / f"cache{i}"),
               "--semantic-encoder", args.semantic_encoder, "--sync-encoder", args.sync_encoder,
               "--duration", str(args.duration), "--text-budget", args.text_budget, "--text-overflow",
               args.text_overflow, "--device", args.device, "--progress-file", str(work / f"part{i}.progress")]
        cmd += ["--monolithic"] if args.monolithic else []
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    bar = tqdm(total=n, desc=f"extract-features ({k} workers)", unit="clip", file=sys.stderr, disable=None,
               dynamic_ncols=True)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(2)
            done = 0
            for i in range(k):
                f = work / f"part{i}.progress"
                done += int(f.read_text() or 0) if f.is_file() else 0
            bar.update(done - bar.n)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        bar.close()
    for i, p in enumerate(procs):
        if p.returncode != 0:
            err = (p.stderr.read() or "").strip().splitlines()
            raise FoleyError(f"extract-features worker {i} failed: {err[-1] if err else p.returncode}")
    cut = []
    for i in range(k):
        f = work / f"part{i}.cut"
        cut += [m for m in f.read_text().splitlines() if m] if f.is_file() else []
    merge_caches([work / f"cache{i}" for i in range(k)], out, info_overrides={"manifest": str(args.manifest)})
    return out, cut
