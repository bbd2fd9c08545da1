#!/usr/bin/env bash
# Default model v3's campaign from nothing on a new machine, resumable at every stage (issue 17): the FoleyWorld data
# it needs, the caches, then the generator training in the background-friendly form (niced, 2 processes).
# Usage: bash scripts/v3_campaign.sh DATA_DIR WORK_DIR [CONFIG] [VENV]
#   DATA_DIR  FoleyWorld data (made here if missing: val, test, test-hard, test-offscreen and the first 3,000 train
#             clips, with scripts/make_foleyworld.sh's seeds and markers)
#   WORK_DIR  caches and the run folder (WORK_DIR/cache/..., WORK_DIR/runs/<config name>)
#   CONFIG    default configs/train_flow/v3_continue.yaml. Every run starts from the bundle's generator
#             (init_from); the original v3.yaml started from version 2's, which this script does not provide
# Rerun the same command after an interruption: finished data chunks, caches and training states are kept.
set -euo pipefail
DATA=${1:?usage: v3_campaign.sh DATA_DIR WORK_DIR [CONFIG] [VENV]}
WORK=${2:?usage: v3_campaign.sh DATA_DIR WORK_DIR [CONFIG] [VENV]}
CONFIG=${3:-configs/train_flow/v3_continue.yaml}
VENV=${4:-.venv}
FF="$VENV/bin/foleyflow"
BUNDLE=foleyflow/assets/default
mkdir -p "$DATA/.done" "$WORK/cache" "$WORK/runs"
chunk() {  # split seed n  (the marker names of scripts/make_foleyworld.sh)
  local mark="$DATA/.done/$1-$2-$3"
  if [ ! -e "$mark" ]; then
    echo "== data: $1 clips $2..$(( $2 + $3 - 1 ))"
    "$FF" world make --out "$DATA" --split "$1" --n "$3" --seed "$2" --workers 2
    touch "$mark"
  fi
}
chunk val 0 200
chunk train 0 1000
chunk train 1000 1000
chunk train 2000 1000
chunk test 0 300
chunk test-hard 0 200
chunk test-offscreen 0 200
# the first 2,400 train clips (the manifest lists the splits in the order they were made)
[ -s "$DATA/train2400.jsonl" ] || awk '/"split": "train"/ && n < 2400 {print; n++}' "$DATA/manifest.jsonl" > "$DATA/train2400.jsonl"
# a cache folder must be new: one left unfinished by an interruption is made again
if [ ! -e "$WORK/cache/vae_train2400.done" ]; then
  rm -rf "$WORK/cache/vae_train2400"
  "$FF" extract-latents "$DATA/train2400.jsonl" --out "$WORK/cache/vae_train2400" --vae "$BUNDLE/vae.safetensors" \
    --threads 2
  touch "$WORK/cache/vae_train2400.done"
fi
if [ ! -e "$WORK/cache/features_train2400.done" ]; then
  rm -rf "$WORK/cache/features_train2400"
  "$FF" extract-features "$DATA/train2400.jsonl" --out "$WORK/cache/features_train2400" \
    --semantic-encoder "$BUNDLE/semantic_av.safetensors" --sync-encoder "$BUNDLE/sync_av.safetensors" \
    --text-budget 64:64,256,64,96 --text-overflow truncate --workers 2
  touch "$WORK/cache/features_train2400.done"
fi
RUN="$WORK/runs/$(basename "$CONFIG" .yaml)"
nice -n 5 "$VENV/bin/torchrun" --standalone --nproc_per_node 2 recipes/train_flow.py --config "$CONFIG" \
  data.latents="$WORK/cache/vae_train2400" data.features="$WORK/cache/features_train2400" out_dir="$RUN" \
  init_from="$BUNDLE/generator.safetensors" data.producers.vae="$BUNDLE/vae.safetensors" \
  data.producers.semantic_encoder="$BUNDLE/semantic_av.safetensors" \
  data.producers.sync_encoder="$BUNDLE/sync_av.safetensors"
echo "v3 campaign: training finished in $RUN"
