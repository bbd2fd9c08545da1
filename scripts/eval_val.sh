#!/usr/bin/env bash
# Scores a bundle on the first N FoleyWorld `val` clips the way the default model's choices are made (issue 17):
# generate-set with a text mode (default caption+auto: the caption and the bundle planner's plan of the video, what
# `foleyflow generate VIDEO --prompt CAPTION` does), 10 steps, then `foleyflow evaluate` against the ground truth.
# Usage: bash scripts/eval_val.sh BUNDLE OUT_DIR [N] [TEXT] [VENV]
# Writes OUT_DIR/gen (the audio) and OUT_DIR/report; compare two with
#   python benchmarks/paired_eval.py --base A/report --new B/report
# Set DATA (default /work/data/foleyworld) to the FoleyWorld folder and SPLIT (default val) to score another split
# once (test, test-hard, test-offscreen: final figures only), STEPS (default 10) for another number of sampling steps
# (a distilled student's 4), THREADS (default 2), NO_VIDEO=1 to generate from the text alone (text-to-audio; TEXT
# caption or cot). Rerunning keeps finished clips.
set -euo pipefail
BUNDLE=${1:?usage: eval_val.sh BUNDLE OUT_DIR [N] [TEXT] [VENV]}
OUT=${2:?usage: eval_val.sh BUNDLE OUT_DIR [N] [TEXT] [VENV]}
N=${3:-200}
TEXT=${4:-caption+auto}
VENV=${5:-.venv}
DATA=${DATA:-/work/data/foleyworld}
SPLIT=${SPLIT:-val}
FF="$VENV/bin/foleyflow"
extra=()
[ "${NO_VIDEO:-0}" = 1 ] && extra+=(--no-video)
mkdir -p "$OUT"
"$FF" generate-set "$DATA/manifest.jsonl" --split "$SPLIT" --limit "$N" --text "$TEXT" --steps "${STEPS:-10}" \
  --bundle "$BUNDLE" --out "$OUT/gen" --threads "${THREADS:-2}" "${extra[@]}"
"$FF" evaluate --generated "$OUT/gen" --reference "$DATA/$SPLIT" --truth "$DATA/$SPLIT" --video "$DATA/$SPLIT" \
  --text "$DATA/manifest.jsonl" -o "$OUT/report" --no-plots --no-baselines
