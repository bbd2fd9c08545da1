#!/usr/bin/env bash
# The main job on the bundled example: see README.md. Usage: bash scripts/demo.sh [VENV_DIR]
set -euo pipefail
VENV=${1:-.venv}
FF="$VENV/bin/foleyflow"
mkdir -p out
echo "== foleyflow info examples/demo.mp4"
"$FF" info examples/demo.mp4
echo
echo "foleyflow demo: no generator is trained yet, so no soundtrack is generated (see README.md, Status)."
