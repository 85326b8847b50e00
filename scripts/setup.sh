#!/usr/bin/env bash
# Creates the project's Python environments (idempotent; re-running only fills in what is missing).
#   .venv          the trainer: torch (CPU build here; any CUDA build works too), numpy, imageio, dev tools
#   .venv-blender  real Blender as a Python module (bpy 5.0.1) for the add-on's integration tests and the demo
#   .venv-blender-4.2, .venv-blender-4.5
#                  the LTS releases the manifest claims, for the same tests (scripts/blender_versions.sh)
#   .venv-stubs    fake-bpy-module for fast import/registration tests and type checks (its bpy stubs would
#                  shadow a real bpy, so it lives apart)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
source scripts/blender_versions.sh

make_env() {  # make_env DIR PACKAGES...
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then "$PY" -m venv "$dir"; fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

echo "[setup] .venv (trainer)"
# Pinning torch first keeps pip from pulling a multi-GB CUDA build on a machine without a GPU.
make_env .venv "torch==${TORCH_VERSION:-2.13.0}" "numpy<2"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

if [ "${SKIP_BLENDER:-0}" != 1 ]; then
  echo "[setup] .venv-blender (bpy $BLENDER_NEWEST, about 1 GB)"
  make_env .venv-blender "bpy==$BLENDER_NEWEST" "numpy<2" pytest imageio
  for version in $BLENDER_LTS; do
    # numpy<2 as for 5.0: the 4.5 wheel asks for numpy>=1.26,<2, the 4.2 one was built against 1.x
    echo "[setup] .venv-blender-${version%.*} (bpy $version, about 1 GB)"
    make_env ".venv-blender-${version%.*}" "bpy==$version" "numpy<2" pytest imageio
  done
  echo "[setup] .venv-stubs (fake-bpy-module)"
  make_env .venv-stubs "fake-bpy-module-4.2" "numpy<2" pytest mypy
fi
echo "[setup] done"
