#!/usr/bin/env bash
# Set up the environment (first run only), then train and evaluate MaskFormer on the generated
# quickstart dataset, write prediction overlays and print the validation mIoU. No downloads.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${MASKFORMER_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
"$PY" tools/quickstart.py "$@"
