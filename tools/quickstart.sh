#!/usr/bin/env bash
# Set up the environment (first run only), then benchmark the ADE20K R50 MaskFormer on
# synthetic data: parameters, inference and training speed, peak memory. No downloads.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${MASKFORMER_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
"$PY" tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --threads 2 "$@"
