#!/usr/bin/env bash
# Makes the FoleyWorld data the default model is trained and measured on (outside the source tree), in chunks, so an
# interrupted run resumes where it stopped (each finished chunk leaves a marker file).
# Usage: bash scripts/make_foleyworld.sh OUT_DIR [TRAIN_CLIPS] [VENV]
# Splits: val 200, test 300, test-hard 200, test-offscreen 200, evaltrain 3000, train TRAIN_CLIPS (default 10000),
# all at the default WorldConfig (8 s, 25 fps, 128x128, 16 kHz stereo), seeds from offset 0 of each split's range.
set -euo pipefail
OUT=${1:?usage: make_foleyworld.sh OUT_DIR [TRAIN_CLIPS] [VENV]}
TRAIN=${2:-10000}
VENV=${3:-.venv}
FF="$VENV/bin/foleyflow"
CHUNK=1000
mkdir -p "$OUT/.done"
make_chunks() {  # split total
  local split=$1 total=$2 start=0
  while [ "$start" -lt "$total" ]; do
    local n=$(( total - start < CHUNK ? total - start : CHUNK ))
    local mark="$OUT/.done/$split-$start-$n"
    if [ ! -e "$mark" ]; then
      echo "== $split: clips $start..$((start + n - 1))"
      "$FF" world make --out "$OUT" --split "$split" --n "$n" --seed "$start" --workers 2
      touch "$mark"
    fi
    start=$(( start + n ))
  done
}
make_chunks val 200
make_chunks test 300
make_chunks test-hard 200
make_chunks test-offscreen 200
make_chunks train $(( TRAIN < 2000 ? TRAIN : 2000 ))   # a first part of train early, so codec training can start
make_chunks evaltrain 3000
make_chunks train "$TRAIN"
echo "FoleyWorld data ready in $OUT"
