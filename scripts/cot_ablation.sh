#!/usr/bin/env bash
# Issue 19's chain-of-thought ablation, resumable at every stage (docs/cot.md, "The ablation"):
#   1. a features cache of the first 2,400 train clips with the monolithic field (--monolithic, captions and the
#      paragraph encoded with a 256-token budget in sentence pieces: --text-budget 256:64,256,64,96 --text-overflow
#      split), from the default bundle's encoders;
#   2. five generators from scratch at the ablation budget (configs/train_flow/cot_ablation.yaml), two at a time, one
#      process and one thread each: none, caption, monolithic, cot, plan;
#   3. a bundle of each (the default bundle's encoders, codec and planner; 10 steps);
#   4. generate-set + evaluate on the first N clips of SPLIT for six rows: none, caption, monolithic, cot, truth (the
#      plan row's model with the ground-truth plan as text and track), auto (the same model with its planner's plan);
#   5. benchmarks/cot_ablation.py: the table, the paired differences to the caption row and the issue's checks.
# Usage: bash scripts/cot_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]
#   DATA_DIR  FoleyWorld (its manifest.jsonl and train2400.jsonl, as scripts/v3_campaign.sh makes them)
#   WORK_DIR  WORK/cache/vae_train2400 (v3's latents cache) must exist; writes WORK/cache/features_train2400_mono,
#             WORK/runs/cot_ablation/<row>, WORK/bundles/cot_ablation/<row>,
#             WORK/eval/cot_ablation/<SPLIT>-<N>/<row> and .../table.json
#   SPLIT, N  default test 300 (the issue's final figures: run them once)
# TRAIN_ARGS (env, optional): extra train_flow overrides for every row, e.g. "steps=2 batch_size=2" for a smoke run.
# Cost (estimate, 2-core Xeon): cache 20 min, training 2 x 3 rounds of about 50-60 min, evaluation 6 x about 15 min:
# about 4.5 h wall. Rerun the same command after an interruption.
set -euo pipefail
DATA=${1:?usage: cot_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]}
WORK=${2:?usage: cot_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]}
SPLIT=${3:-test}
N=${4:-300}
VENV=${5:-.venv}
FF="$VENV/bin/foleyflow"
PY="$VENV/bin/python"
B=foleyflow/assets/default
LAT="$WORK/cache/vae_train2400"
FEAT="$WORK/cache/features_train2400_mono"
BUDGET=256:64,256,64,96
if [ ! -e "$LAT.done" ]; then
  echo "error: $LAT.done missing: make the latents cache with scripts/v3_campaign.sh" >&2
  exit 2
fi
if [ ! -e "$FEAT.done" ]; then
  rm -rf "$FEAT"
  "$FF" extract-features "$DATA/train2400.jsonl" --out "$FEAT" --semantic-encoder "$B/semantic_av.safetensors" \
    --sync-encoder "$B/sync_av.safetensors" --text-budget "$BUDGET" --text-overflow split --monolithic --workers 2
  touch "$FEAT.done"
fi

declare -A ROW_ARGS=(
  [none]="model.use_text=false"
  [caption]="data.text_fields={caption: 1.0}"
  [monolithic]="data.text_fields={monolithic: 1.0}"
  [cot]="data.text_fields={cot: 1.0}"
  [plan]="data.text_fields={cot: 1.0}|model.plan_dim=12"
)
train() {  # row
  local run="$WORK/runs/cot_ablation/$1"
  # generator_ema.safetensors is written at every checkpoint, so a marker; it records the extra arguments, and a
  # finished row made with others (a smoke run's) is refused rather than taken for this one
  if [ -e "$run.done" ]; then
    if [ "$(cat "$run.done")" != "${TRAIN_ARGS:-}" ]; then
      echo "error: $run was trained with TRAIN_ARGS='$(cat "$run.done")'; use another WORK_DIR" >&2
      return 1
    fi
    return 0
  fi
  local extra=()
  IFS='|' read -r -a extra <<< "${ROW_ARGS[$1]}"
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of overrides
  OMP_NUM_THREADS=1 nice -n 5 "$PY" recipes/train_flow.py --config configs/train_flow/cot_ablation.yaml \
    data.latents="$LAT" data.features="$FEAT" out_dir="$run" threads=1 data.producers.vae="$B/vae.safetensors" \
    data.producers.semantic_encoder="$B/semantic_av.safetensors" \
    data.producers.sync_encoder="$B/sync_av.safetensors" "${extra[@]}" ${TRAIN_ARGS:-} > "$run.log" 2>&1 || {
      echo "error: training row $1 failed, see $run.log" >&2; return 1; }
  printf '%s' "${TRAIN_ARGS:-}" > "$run.done"
}
mkdir -p "$WORK/runs/cot_ablation" "$WORK/bundles/cot_ablation" "$WORK/eval/cot_ablation"
for pair in "none caption" "monolithic cot" "plan"; do
  pids=()
  for row in $pair; do
    echo "== training $row (log: $WORK/runs/cot_ablation/$row.log)"
    train "$row" & pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done    # both finish (or fail) before the script stops
  [ "$failed" = 0 ] || exit 1
done

for row in none caption monolithic cot plan; do
  out="$WORK/bundles/cot_ablation/$row"
  # a bundle is kept only if it is newer than its generator, and made in a temporary folder renamed when complete
  [ -e "$out/bundle.json" ] && [ "$out/bundle.json" -nt "$WORK/runs/cot_ablation/$row.done" ] && continue
  rm -rf "$out" "$out.tmp"
  "$PY" recipes/assemble_bundle.py --out "$out.tmp" --name "cot-ablation-$row" \
    --generator "$WORK/runs/cot_ablation/$row/generator_ema.safetensors" --semantic "$B/semantic_av.safetensors" \
    --sync "$B/sync_av.safetensors" --vae "$B/vae.safetensors" --vocoder "$B/vocoder.safetensors" \
    --planner "$B/planner.safetensors" --fp16 --text-budget "$BUDGET" --text-overflow split --steps 10 \
    --trained-on "FoleyWorld, 2,400 train clips, 1,500 steps (issue 19's CoT ablation, row $row)"
  mv "$out.tmp" "$out"
done

# evaluation row -> (bundle, generate-set --text mode)
declare -A EVAL=([none]="none none" [caption]="caption caption" [monolithic]="monolithic monolithic" [cot]="cot cot"
                 [truth]="plan truth" [auto]="plan auto")
for row in none caption monolithic cot truth auto; do
  read -r bundle mode <<< "${EVAL[$row]}"
  out="$WORK/eval/cot_ablation/$SPLIT-$N/$row"           # a folder per split and size: one never stands for another
  report="$out/report/report.json"
  [ -e "$report" ] && [ "$report" -nt "$WORK/bundles/cot_ablation/$bundle/bundle.json" ] && continue
  echo "== evaluating $row ($mode on $SPLIT, $N clips)"
  SPLIT="$SPLIT" DATA="$DATA" bash scripts/eval_val.sh "$WORK/bundles/cot_ablation/$bundle" "$out" "$N" "$mode" "$VENV"
done
args=()
for row in none caption monolithic cot truth auto; do args+=("$row=$WORK/eval/cot_ablation/$SPLIT-$N/$row/report"); done
"$PY" benchmarks/cot_ablation.py "${args[@]}" --json "$WORK/eval/cot_ablation/$SPLIT-$N/table.json"
