#!/usr/bin/env bash
# Installs everything ebm-tf needs on a fresh Debian 12 machine (as root, or with sudo):
#   - Debian packages: Bazel (bazel-bootstrap, offline) and the Fashion-MNIST IDX files;
#   - the virtual environment .venv with ebm-tf and its pinned dependencies (TF 2.21, Keras 3).
#   - Fashion-MNIST prepared as a tfds dataset from those IDX files (offline).
# Idempotent: a second run only checks. Set EBM_SKIP_APT=1 to skip the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${EBM_SKIP_APT:-0}" != "1" ]; then
  need=()
  command -v bazel >/dev/null 2>&1 || need+=(bazel-bootstrap bazel-rules-java)
  [ -d /usr/share/bazel/rules/java ] || need+=(bazel-rules-java)
  [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

stamp=".venv/.ebm_tf_installed_$(cat setup.py requirements.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m pip check
  rm -f .venv/.ebm_tf_installed_*
  touch "$stamp"
fi
# Fashion-MNIST as a tfds dataset, from the Debian package's local IDX files (no download): the
# shipped Fashion-MNIST models' tests score them on its test split. Once, about 1 min.
fmnist_dir="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}/fashion_mnist_idx"
if [ ! -d "$fmnist_dir" ] && [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  .venv/bin/python -m ebm_tf.prepare_data --dataset=fashion_mnist >/dev/null
fi
echo "ebm-tf installed in $(pwd)/.venv"
