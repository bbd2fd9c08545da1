#!/usr/bin/env bash
# Issue 17 item 3 at the ablation scale: one model for T2A, V2A and VT2A (Omni2Sound's interleaved tasks) against a
# specialist per task with the same budget, resumable at every stage (docs/default_model.md, "One model for three
# tasks"). It shares the CoT ablation's setting (configs/train_flow/cot_ablation.yaml from scratch, 1,500 steps of 16
# clips, the caption as the text, its features cache) and two of its rows, which are already the specialists:
#   vt2a     the CoT ablation's `caption` row (no `tasks`: every step is vt2a with the guidance dropouts; the task
#            draw has its own random stream, so `tasks={vt2a: 1}` would train the same weights)
#   v2a      the CoT ablation's `none` row (video only, no text pathway)
# and trains two more, one process and one thread each, side by side:
#   unified  tasks={t2a: 0.25, v2a: 0.25, vt2a: 0.5}, the v3 campaign's mix
#   t2a      tasks={t2a: 1} (the caption alone: the video is always the learned empty one)
# then scores on the first N clips of SPLIT: unified-t2a and t2a (the caption without the video), unified-v2a (the
# video without text), unified-vt2a (both); v2a and vt2a reuse the CoT ablation's `none` and `caption` evaluations of
# the same SPLIT and N (run here if missing); benchmarks/task_ablation.py prints the table and the 5% check.
# Usage: bash scripts/task_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]
#   needs WORK/cache/features_train2400_mono (scripts/cot_ablation.sh's first stage) and the CoT ablation's `none`
#   and `caption` rows trained (its bundles WORK/bundles/cot_ablation/{none,caption}); writes
#   WORK/runs/task_ablation/<row>, WORK/bundles/task_ablation/<row>, WORK/eval/task_ablation/<SPLIT>-<N>/<row>
#   and .../table.json
# TRAIN_ARGS (env, optional): extra train_flow overrides for both rows (a smoke run's "steps=2 batch_size=2").
# Cost (estimate, 2-core Xeon): training about 60 min (two rows side by side), evaluation 4 x about 15 min for 300.
set -euo pipefail
DATA=${1:?usage: task_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]}
WORK=${2:?usage: task_ablation.sh DATA_DIR WORK_DIR [SPLIT] [N] [VENV]}
SPLIT=${3:-test}
N=${4:-300}
VENV=${5:-.venv}
PY="$VENV/bin/python"
B=foleyflow/assets/default
LAT="$WORK/cache/vae_train2400"
FEAT="$WORK/cache/features_train2400_mono"
ABL="$WORK/bundles/cot_ablation"
for need in "$LAT.done" "$FEAT.done" "$ABL/none/bundle.json" "$ABL/caption/bundle.json"; do
  if [ ! -e "$need" ]; then
    echo "error: $need missing: run scripts/cot_ablation.sh first (its cache and its none and caption rows)" >&2
    exit 2
  fi
done

declare -A ROW_ARGS=([unified]="tasks={t2a: 0.25, v2a: 0.25, vt2a: 0.5}" [t2a]="tasks={t2a: 1.0}")
train() {  # row
  local run="$WORK/runs/task_ablation/$1"
  if [ -e "$run.done" ]; then           # a marker recording the extra arguments, as in cot_ablation.sh
    if [ "$(cat "$run.done")" != "${TRAIN_ARGS:-}" ]; then
      echo "error: $run was trained with TRAIN_ARGS='$(cat "$run.done")'; use another WORK_DIR" >&2
      return 1
    fi
    return 0
  fi
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of overrides
  OMP_NUM_THREADS=1 nice -n 5 "$PY" recipes/train_flow.py --config configs/train_flow/cot_ablation.yaml \
    data.latents="$LAT" data.features="$FEAT" out_dir="$run" threads=1 data.producers.vae="$B/vae.safetensors" \
    data.producers.semantic_encoder="$B/semantic_av.safetensors" \
    data.producers.sync_encoder="$B/sync_av.safetensors" "data.text_fields={caption: 1.0}" "${ROW_ARGS[$1]}" \
    ${TRAIN_ARGS:-} > "$run.log" 2>&1 || { echo "error: training row $1 failed, see $run.log" >&2; return 1; }
  printf '%s' "${TRAIN_ARGS:-}" > "$run.done"
}
mkdir -p "$WORK/runs/task_ablation" "$WORK/bundles/task_ablation" "$WORK/eval/task_ablation"
pids=()
for row in unified t2a; do
  echo "== training $row (log: $WORK/runs/task_ablation/$row.log)"
  train "$row" & pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || exit 1

for row in unified t2a; do
  out="$WORK/bundles/task_ablation/$row"
  [ -e "$out/bundle.json" ] && [ "$out/bundle.json" -nt "$WORK/runs/task_ablation/$row.done" ] && continue
  rm -rf "$out" "$out.tmp"
  "$PY" recipes/assemble_bundle.py --out "$out.tmp" --name "task-ablation-$row" \
    --generator "$WORK/runs/task_ablation/$row/generator_ema.safetensors" --semantic "$B/semantic_av.safetensors" \
    --sync "$B/sync_av.safetensors" --vae "$B/vae.safetensors" --vocoder "$B/vocoder.safetensors" \
    --planner "$B/planner.safetensors" --fp16 --text-budget 256:64,256,64,96 --text-overflow split --steps 10 \
    --trained-on "FoleyWorld, 2,400 train clips, 1,500 steps (issue 17's task ablation, row $row)"
  mv "$out.tmp" "$out"
done

# evaluation row -> (bundle folder, generate-set --text mode, 1 = without the video)
declare -A EVAL=([unified-t2a]="$WORK/bundles/task_ablation/unified caption 1"
                 [t2a]="$WORK/bundles/task_ablation/t2a caption 1"
                 [unified-v2a]="$WORK/bundles/task_ablation/unified none 0"
                 [unified-vt2a]="$WORK/bundles/task_ablation/unified caption 0")
for row in unified-t2a t2a unified-v2a unified-vt2a; do
  read -r bundle mode novideo <<< "${EVAL[$row]}"
  out="$WORK/eval/task_ablation/$SPLIT-$N/$row"
  report="$out/report/report.json"
  [ -e "$report" ] && [ "$report" -nt "$bundle/bundle.json" ] && continue
  echo "== evaluating $row ($mode$([ "$novideo" = 1 ] && echo ', no video') on $SPLIT, $N clips)"
  NO_VIDEO="$novideo" SPLIT="$SPLIT" DATA="$DATA" bash scripts/eval_val.sh "$bundle" "$out" "$N" "$mode" "$VENV"
done
# the specialists of v2a and vt2a: the CoT ablation's rows, evaluated there (the same folders cot_ablation.sh uses)
declare -A SPECIAL=([v2a]="none none" [vt2a]="caption caption")
for row in v2a vt2a; do
  read -r abl mode <<< "${SPECIAL[$row]}"
  out="$WORK/eval/cot_ablation/$SPLIT-$N/$abl"
  report="$out/report/report.json"
  [ -e "$report" ] && [ "$report" -nt "$ABL/$abl/bundle.json" ] && continue
  echo "== evaluating the CoT ablation's $abl row ($mode on $SPLIT, $N clips)"
  SPLIT="$SPLIT" DATA="$DATA" bash scripts/eval_val.sh "$ABL/$abl" "$out" "$N" "$mode" "$VENV"
done
E="$WORK/eval/task_ablation/$SPLIT-$N"
"$PY" benchmarks/task_ablation.py "unified-t2a=$E/unified-t2a/report" "t2a=$E/t2a/report" \
  "unified-v2a=$E/unified-v2a/report" "v2a=$WORK/eval/cot_ablation/$SPLIT-$N/none/report" \
  "unified-vt2a=$E/unified-vt2a/report" "vt2a=$WORK/eval/cot_ablation/$SPLIT-$N/caption/report" --json "$E/table.json"
