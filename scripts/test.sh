#!/usr/bin/env bash
# Runs the ebm-tf test suite (installs first if needed). Extra arguments go to pytest.
# Slow tests are skipped unless EBM_SLOW_TESTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"
