#!/usr/bin/env bash
# Sets up everything foleyflow needs on a Debian machine: system packages, then a virtual environment.
# Usage: bash scripts/setup.sh [VENV_DIR]
# Environment:
#   FOLEYFLOW_TORCH   pip requirement for torch (default torch==2.13.0, the CPU build of the reference machine).
#                     GPU users set e.g. FOLEYFLOW_TORCH="torch==2.9.1" (a CUDA build) or pre-install torch and set
#                     FOLEYFLOW_TORCH=skip.
set -euo pipefail
VENV=${1:-.venv}
PKGS=(fluidsynth fluid-soundfont-gm libmysofa1 chromium)  # chromium: the web UI's browser test (Playwright)

missing=()
for p in "${PKGS[@]}"; do
  # "install ok installed" only: a removed package can leave "deinstall ok config-files", which dpkg -s accepts
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "foleyflow setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "foleyflow setup: missing system packages: ${missing[*]}" >&2
    echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    echo "then run the command again." >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "foleyflow setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
TORCH=${FOLEYFLOW_TORCH:-torch==2.13.0}
if [ "$TORCH" != "skip" ]; then
  # torch first, so that nothing that depends on it pulls a multi-GB CUDA build on a CPU machine.
  "${PIP[@]}" install "$TORCH" 2>&1 | grep -v "is ignored: it is neither" || true
fi
"$VENV/bin/python" -c "import torch" || { echo "foleyflow setup: torch failed to install" >&2; exit 1; }
# the installed torch, pinned while the extras install (Gradio's dependencies must not replace it)
TORCH_PIN="torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
"${PIP[@]}" install -e ".[test,mmaudio,serve,ui,embedders]" "$TORCH_PIN" 2>&1 | grep -v "is ignored: it is neither" || true
# Released MMAudio pipeline: the maintained model packages without their declared dependencies (torchvision and a
# training stack would pull a CUDA torch); the light ones come from the extra above.
"${PIP[@]}" install --no-deps "open-clip-torch==3.3.0" "bigvgan==2.4.1" 2>&1 | grep -v "is ignored: it is neither" || true
# Published evaluation embedders (docs/evaluation.md) and published rewards (docs/rewards.md, Audiobox Aesthetics
# too): the model packages without their declared dependencies (torchaudio, numpy<2, wandb...); foleyflow loads only
# their model modules (models/published_nets.py).
"${PIP[@]}" install --no-deps "hear21passt==0.0.26" "laion-clap==1.1.7" "msclap==1.3.4" "panns-inference==0.1.1" \
  "torchvggish==0.2" "audiobox-aesthetics==0.0.4" 2>&1 | grep -v "is ignored: it is neither" || true
"$VENV/bin/python" -c "import foleyflow, av, soundfile, safetensors" || { echo "foleyflow setup: install failed" >&2; exit 1; }
echo "foleyflow setup: ready ($VENV)"
