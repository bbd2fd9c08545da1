"""Paired comparison of two `foleyflow evaluate` runs, key by key, with clip-bootstrap intervals (issue 18's targets).

    python benchmarks/paired_eval.py --base eval/start --new eval/rl [--resamples 2000] [--seed 0] [--json out.json] \
        [--onsets-librosa gen_start/ gen_rl/ --truth fw_test/]

--base and --new are report folders (their per_clip.jsonl) or per_clip.jsonl files. On the clips both have (the
count is printed), every key with a per-clip form (foleyflow/eval/paired.py: onset F1/precision/recall at each
tolerance, onset error, class accuracy, pan error, CLAP, DeSync, quality, KL, ITD/ILD errors, loudness, clipping)
is pooled for each set as report.json pools it; the difference new - base gets a 95% percentile interval from
--resamples clip resamples (the same resample for both sets and for every key, so clip difficulty cancels), marked
when it excludes 0, with the verdict "better"/"worse" by the key's direction (lower is better for pan_error,
desync_s, errors, KL, clipping). FD, KAD and IS are set-level only and are not compared here.

--onsets-librosa GEN_BASE GEN_NEW --truth TRUTH adds `onset_f1@50ms_librosa` (and its precision and recall): the
generated audio of each set (the folders that were evaluated) through an independent detector,
`librosa.onset.onset_detect` on the mono mix (foleyflow.eval.onsets.librosa_onsets), matched to the ground truth at
+-50 ms with the evaluation's own event filtering (foleyflow.eval.truth.score_detections), so a gain can be shown
not to be the evaluation detector's. Needs librosa (the `test` extra).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LIBROSA_TOLERANCE_S = 0.05


def librosa_counts(gen_dir: str, truth_dir: str, clips: list[str]) -> dict[str, dict]:
    """{clip: {onset_tp@50ms_librosa, onset_fp@..., onset_fn@...}} of the librosa detector on gen_dir's audio."""
    from foleyflow.errors import EvalError
    from foleyflow.eval.audio_io import list_audio, read_stereo
    from foleyflow.eval.onsets import librosa_onsets
    from foleyflow.eval.truth import score_detections
    from foleyflow.events import read_events

    audio = list_audio(gen_dir)
    lost = [c for c in clips if c not in audio or not (Path(truth_dir) / f"{c}.json").is_file()]
    if lost:
        raise EvalError(f"{len(lost)} compared clips have no audio in {gen_dir} or no ground truth in {truth_dir} "
                        f"(e.g. {', '.join(lost[:3])})")
    ms = int(round(LIBROSA_TOLERANCE_S * 1000))
    out = {}
    for c in clips:
        x, sr = read_stereo(audio[c])
        scores = score_detections(read_events(Path(truth_dir) / f"{c}.json"), librosa_onsets(x, sr),
                                  x.shape[1] / sr, (LIBROSA_TOLERANCE_S,))
        n = scores.counts[LIBROSA_TOLERANCE_S]
        out[c] = {f"onset_tp@{ms}ms_librosa": n.tp, f"onset_fp@{ms}ms_librosa": n.fp,
                  f"onset_fn@{ms}ms_librosa": n.fn}
    return out


def run(argv: list[str] | None = None) -> dict:
    """Parses argv, prints the table, writes --json; returns the comparison (paired.compare's dict)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="report folder (or per_clip.jsonl) of the starting system")
    p.add_argument("--new", required=True, help="report folder (or per_clip.jsonl) of the system compared with it")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the comparison as JSON")
    p.add_argument("--onsets-librosa", nargs=2, metavar=("GEN_BASE", "GEN_NEW"),
                   help="generated audio folders of base and new: adds onset F1 +-50 ms by librosa's detector")
    p.add_argument("--truth", metavar="DIR", help="ground truth <clip>.json (with --onsets-librosa)")
    args = p.parse_args(argv)
    if args.onsets_librosa and not args.truth:
        p.error("--onsets-librosa needs --truth")
    from foleyflow.eval.paired import compare, markdown, read_per_clip

    base, new = read_per_clip(args.base), read_per_clip(args.new)
    if args.onsets_librosa:
        shared = sorted(set(base) & set(new))
        for records, folder in ((base, args.onsets_librosa[0]), (new, args.onsets_librosa[1])):
            for clip, counts in librosa_counts(folder, args.truth, shared).items():
                records[clip] = {**records[clip], **counts}
    result = compare(base, new, resamples=args.resamples, seed=args.seed)
    result.update(base_path=str(args.base), new_path=str(args.new))
    print(markdown(result))
    if args.json:
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


def main() -> None:
    from foleyflow.errors import FoleyError

    try:
        run()
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
