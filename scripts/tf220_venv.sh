#!/usr/bin/env bash
# Creates (once) a virtual environment with the TensorFlow 2.20 runtime, the runtime of the newest
# TF Serving release this project can confirm (tensorflow/serving:2.20.0), for
# export/tf220_compat_test.py. It lives outside the repository (default
# ~/.cache/ebm_tf/tf220-venv, or $EBM_TF220_VENV) and holds tensorflow-cpu 2.20 and its
# dependencies from PyPI (~1.2 GB). A half-made environment (no marker file) is made again.
# Prints the interpreter's path on stdout:
#   export EBM_TF220_PYTHON="$(bash scripts/tf220_venv.sh)"
set -euo pipefail
venv="${EBM_TF220_VENV:-${HOME:-/root}/.cache/ebm_tf/tf220-venv}"
marker="$venv/.ebm_tf220_installed"
if [[ ! -f "$marker" ]]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet "tensorflow-cpu==2.20.*" >&2
  "$venv/bin/python" -c "import tensorflow as tf; assert tf.__version__.startswith('2.20.'), tf.__version__" >&2
  touch "$marker"
fi
echo "$venv/bin/python"
