#!/usr/bin/env bash
# The whole job on a fresh machine: environments, a built-in demo scene in headless Blender, capture,
# training with the CPU preset, import as a Volume, a saved .blend, a side-by-side image and the metrics.
#   bash scripts/demo.sh                  (outputs in demo_out/)
# Environment knobs: DEMO_OUT, DEMO_VIEWS (60), DEMO_SIZE (100 px), DEMO_PRESET (fast), DEMO_STEPS (1500).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo_out}
VIEWS=${DEMO_VIEWS:-60}
SIZE=${DEMO_SIZE:-100}
PRESET=${DEMO_PRESET:-fast}
start=$(date +%s)

bash scripts/setup.sh
export BLENDER_PLENOX_PYTHON="$PWD/.venv/bin/python"
BPY=.venv-blender/bin/python
mkdir -p "$OUT"

echo "== demo scene"
$BPY -m blender_plenox.demo_scene build "$OUT/demo_scene.blend"

echo "== capture, train ($PRESET), import"
# 53 training views of 100 px: a shorter schedule than the preset's. (The add-on trains one colour per
# voxel, SH degree 0, unless --view-dependent: the imported volume shows only that.)
extra=(--trainer-set "steps=${DEMO_STEPS:-1500}" --trainer-set upsample_at=500)
$BPY blender_plenox/batch.py --blend "$OUT/demo_scene.blend" -- \
  --out "$OUT/dataset" --overwrite --views "$VIEWS" --width "$SIZE" --height "$SIZE" --samples 16 \
  --train --run "$OUT/run" --preset "$PRESET" "${extra[@]}" \
  --import --save "$OUT/demo.blend"

echo "== comparison: ground truth | trainer render | Cycles render of the imported volume"
$BPY -m blender_plenox.demo_scene compare --blend "$OUT/demo.blend" --data "$OUT/dataset" \
  --run "$OUT/run" --out "$OUT/compare"
echo "== metrics"
cat "$OUT/run/metrics.json"; echo
echo "demo finished in $(( $(date +%s) - start )) s: $OUT/demo.blend, $OUT/compare/side_by_side.png"
