#!/usr/bin/env bash
# Set up the environment (first run only), then lint and run the test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash tools/test.sh tests/modeling -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${MASKFORMER_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
# CUDA_VISIBLE_DEVICES="": the suite is a CPU suite, also on a machine with a GPU.
CUDA_VISIBLE_DEVICES="" "$PY" -m pytest "$@"
