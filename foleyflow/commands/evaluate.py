"""`foleyflow evaluate`: score generated audio against references, ground truth and baselines; write a report."""
from __future__ import annotations

import sys
from pathlib import Path

from foleyflow.errors import EvalError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score generated audio against references, ground truth and baselines",
        description="Scores the audio files of --generated against --reference (matched by file name), the "
                    "FoleyWorld ground truth of --truth, and baselines (the reference itself, shuffled, silence, "
                    "noise, --baseline-set), and writes report.json, report.md, per_clip.jsonl (the generated clips' "
                    "figures, for benchmarks/paired_eval.py) and PNG plots to -o. The learned "
                    "metrics use the evaluation models of --models (the bundled ones by default); metrics whose "
                    "model or input is missing are listed as skipped with the reason.")
    p.add_argument("--generated", required=True, metavar="DIR", help="generated audio (.wav/.flac)")
    p.add_argument("--reference", required=True, metavar="DIR", help="reference audio with the same file names")
    p.add_argument("--truth", metavar="DIR", help="ground-truth JSON per clip (<name>.json, FoleyWorld)")
    p.add_argument("--baseline-set", metavar="DIR", help="an independent reference set (FD/KAD noise floor)")
    p.add_argument("--video", metavar="DIR", help="videos of the clips (for DeSync and AV similarity)")
    p.add_argument("--text", metavar="FILE", help="captions of the clips (for text-audio similarity)")
    p.add_argument("--train", metavar="DIR", help="training clips, <name>.wav and <name>.mp4 (retrieval baseline)")
    p.add_argument("--retrieval-by", choices=("video", "caption"), default="video",
                   help="the retrieval baseline's key: 'video' (nearest training video by --retrieval-encoder) or "
                        "'caption' (text-to-audio: nearest training caption of --text by MiniLM's sentence vector; "
                        "needs --train)")
    p.add_argument("--retrieval-encoder", metavar="PATH",
                   help="the pipeline's semantic encoder for the retrieval baseline: a bundle folder or its "
                        "semantic_av checkpoint (needs --train and --video)")
    p.add_argument("--models", metavar="DIR",
                   help="folder of evaluation models (event.safetensors, clap.safetensors, offset.safetensors, "
                        "av.safetensors, quality.safetensors); default: the bundled foleyflow/assets/eval/ when it holds models")
    p.add_argument("--embedders", metavar="DIR",
                   help="folder of published embedders' weights (PaSST, PANNs, VGGish, LAION-CLAP, MS-CLAP; file names "
                        "in docs/evaluation.md): adds fd/kad/kl/is/clap_<name> as av-benchmark computes them")
    p.add_argument("--no-models", action="store_true", help="use no evaluation models (learned metrics skipped)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for the report")
    p.add_argument("--no-baselines", action="store_true", help="score only the generated set")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--extrapolate-fd", action="store_true", help="also report FD extrapolated to N -> infinity")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled/noise baselines and subsampling")
    p.set_defaults(func=run)


def run(args) -> int:
    from foleyflow.eval.report import markdown_table, write_report
    from foleyflow.eval.models import default_models_dir, load_eval_models
    from foleyflow.eval.run import EvalModels, run_evaluation

    for flag, value, kind in (("--video", args.video, "dir"), ("--train", args.train, "dir"),
                              ("--text", args.text, "file"), ("--truth", args.truth, "dir"),
                              ("--baseline-set", args.baseline_set, "dir"), ("--embedders", args.embedders, "dir"),
                              ("--retrieval-encoder", args.retrieval_encoder, "path")):
        exists = {"dir": Path.is_dir, "file": Path.is_file, "path": Path.exists}[kind]
        if value is not None and not exists(Path(value)):
            raise EvalError(f"{flag} {value}: no such {'folder' if kind == 'dir' else 'file'}")
    if args.no_models and args.models:
        raise EvalError("--models and --no-models exclude each other")
    folder = None if args.no_models else (args.models or default_models_dir())
    models = load_eval_models(folder, video_dir=args.video, text_file=args.text) if folder else EvalModels()
    published_skipped = {}
    if args.embedders is not None:
        from foleyflow.eval.models import read_captions
        from foleyflow.eval.published_metrics import load_published_models

        captions = read_captions(args.text) if args.text else {}
        models.published, published_skipped = load_published_models(args.embedders, captions, seed=args.seed)
        if not models.published:
            raise EvalError(f"--embedders {args.embedders}: no published embedder's weights found (expected file "
                            "names: see docs/evaluation.md)")
        for m in models.published:
            if m.text is not None and not captions:
                published_skipped[f"{m.name} (clap score)"] = "--text not given"
    retrieval_embedder = None
    if args.retrieval_encoder is not None:
        from foleyflow.eval.av_models import load_video_embedder

        retrieval_embedder = load_video_embedder(args.retrieval_encoder)
    caption_embedder = None
    if args.retrieval_by == "caption":
        if args.train is None or args.text is None:
            raise EvalError("--retrieval-by caption needs --train (training clips) and --text (their captions)")
        caption_embedder = _caption_embedder()
    report = run_evaluation(args.generated, args.reference, truth_dir=args.truth, baseline_set_dir=args.baseline_set,
                            video_dir=args.video, text_file=args.text, train_dir=args.train, models=models,
                            baselines=not args.no_baselines, seed=args.seed, extrapolate_fd=args.extrapolate_fd,
                            progress=sys.stderr.isatty(), retrieval_embedder=retrieval_embedder,
                            caption_embedder=caption_embedder)
    report["settings"]["models"] = str(folder) if folder else None
    report["settings"]["embedders"] = str(args.embedders) if args.embedders else None
    for name, why in published_skipped.items():
        report["skipped"][f"published {name}"] = why
    written = write_report(report, args.output, plots=not args.no_plots)
    print(markdown_table(report))
    for what, why in report["skipped"].items():
        print(f"skipped {what}: {why}")
    print(f"report written to {written['markdown'].parent} ({', '.join(p.name for p in written.values())})")
    return 0


def _caption_embedder():
    """texts -> (N, 384) MiniLM sentence vectors (mask-mean, L2-normalised; long captions cut), in batches."""
    import numpy as np

    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

    enc = load_text_encoder(TextEncoderConfig(overflow="truncate"))

    def embed(texts):
        import warnings

        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(0, len(texts), 256):
                out.append(enc.encode(list(texts[i:i + 256])).pooled.numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)

    embed.identity = {"model": "sentence-transformers/all-MiniLM-L6-v2", "vector": "pooled"}
    return embed
