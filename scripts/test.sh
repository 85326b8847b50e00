#!/usr/bin/env bash
# Runs every test layer, each in its own environment (set up first by scripts/setup.sh):
#   1. math and formats, the trainer and the add-on's bpy-free modules   (.venv, plain pytest)
#   2. the add-on against fake-bpy-module stubs: import, register, types  (.venv-stubs)
#   3. the add-on in real Blender (bpy 5.0.1): capture, train, import      (.venv-blender)
#      and on the LTS releases (4.2, 4.5): capture, train, import, render  (.venv-blender-4.2, -4.5)
#      (scripts/blender_versions.sh says which versions and which tests)
# Extra arguments go to every pytest run (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/blender_versions.sh
bash scripts/setup.sh
status=0
echo "== layer 1: trainer and bpy-free add-on modules"
.venv/bin/python -m pytest tests/trainer tests/addon "$@" || status=1
if [ "${SKIP_BLENDER:-0}" != 1 ]; then
  echo "== layer 2: add-on with fake-bpy-module stubs"
  .venv-stubs/bin/python -m pytest tests/stubs "$@" || status=1
  echo "== layer 3: add-on in real Blender $BLENDER_NEWEST"
  .venv-blender/bin/python -m pytest tests/blender "$@" || status=1
  for version in $BLENDER_LTS; do
    echo "== layer 3: add-on in real Blender $version (capture, train, import, render)"
    ".venv-blender-${version%.*}/bin/python" -m pytest "${BLENDER_LTS_TESTS[@]}" "$@" || status=1
  done
fi
exit $status
