#!/usr/bin/env bash
# Creates the project's three Python environments (idempotent; re-running only fills in what is missing).
#   .venv          the trainer: torch (CPU build here; any CUDA build works too), numpy, imageio, dev tools
#   .venv-blender  real Blender as a Python module (bpy 5.0.1) for the add-on's integration tests and the demo
#   .venv-stubs    fake-bpy-module for fast import/registration tests and type checks (its bpy stubs would
#                  shadow a real bpy, so it lives apart)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

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
  echo "[setup] .venv-blender (bpy 5.0.1, about 1 GB)"
  make_env .venv-blender "bpy==5.0.1" "numpy<2" pytest imageio
  echo "[setup] .venv-stubs (fake-bpy-module)"
  make_env .venv-stubs "fake-bpy-module-4.2" "numpy<2" pytest mypy
fi
echo "[setup] done"
