#!/usr/bin/env bash
# The main job on the bundled example: see README.md. Usage: bash scripts/demo.sh [VENV_DIR]
# Uses the trained default model (foleyflow/assets/default; its MODEL_CARD.md says what it can and cannot do); without
# it, it builds an UNTRAINED bundle (random weights) in out/ and says so.
set -euo pipefail
VENV=${1:-.venv}
FF="$VENV/bin/foleyflow"
mkdir -p out
echo "== foleyflow info examples/demo.mp4"
"$FF" info examples/demo.mp4
echo
if [ -f foleyflow/assets/default/bundle.json ]; then
    BUNDLE=foleyflow/assets/default
    TEXT=caption+auto       # the default model plans each video: the caption is the text, the plan gives the timing
else
    BUNDLE=out/untrained-bundle
    TEXT=caption
    echo "== no trained default model yet: building an UNTRAINED bundle (random weights) in $BUNDLE"
    rm -rf "$BUNDLE"
    "$VENV/bin/python" -c "from foleyflow.bundle import build_untrained_bundle as b; print('built', b('$BUNDLE'))"
    echo
fi
echo "== foleyflow generate examples/demo.mp4 -o out/demo_foley.mp4 --bundle $BUNDLE"
# (out/ is the demo's own folder: --overwrite also replaces a result of a foleyflow from before outputs were tagged)
"$FF" generate examples/demo.mp4 -o out/demo_foley.mp4 --bundle "$BUNDLE" --overwrite
echo
echo "== foleyflow generate-set examples/foleyworld/manifest.jsonl --out out/demo_eval/generated --text $TEXT (4 FoleyWorld test clips)"
rm -rf out/demo_eval
"$FF" generate-set examples/foleyworld/manifest.jsonl --out out/demo_eval/generated --bundle "$BUNDLE" --text "$TEXT"
echo
echo "== foleyflow evaluate: the generated audio against the clips' exact ground truth"
"$FF" evaluate --generated out/demo_eval/generated --reference examples/foleyworld --truth examples/foleyworld \
    --video examples/foleyworld --text examples/foleyworld/manifest.jsonl -o out/demo_eval/report --no-plots
echo
echo "foleyflow demo: out/demo_foley.mp4 (the example video with its generated soundtrack), out/demo_eval/report"
echo "(the 'reference' column is the clips' true audio: the ceiling; 'shuffled' is another clip's true audio)"
if [ "$BUNDLE" = out/untrained-bundle ]; then
    echo
    echo "foleyflow demo: out/demo_foley.mp4 and out/demo_foley.wav hold sound from an UNTRAINED model (random"
    echo "weights). It is noise-like and unrelated to the picture; it shows that the machinery runs end to end,"
    echo "not what foleyflow will sound like once the default model is trained (see README.md, Status)."
fi
