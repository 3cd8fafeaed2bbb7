#!/usr/bin/env bash
# Create (or reuse) the project environment and install the MaskFormer stack into it.
#
# Idempotent: a finished set-up leaves a stamp; running again with the same pyproject.toml and
# this script returns at once. Both README commands call it.
#
# Environment variables:
#   PYTHON                 interpreter to build the venv from (default: python3)
#   MASKFORMER_VENV        where the venv lives (default: <repo>/.venv)
#   MASKFORMER_TORCH_SPEC  pip spec for torch/torchvision when none is importable
#                          (default: "torch==2.14.1 torchvision==0.29.1")
#   MASKFORMER_D2_SPEC     registry package providing detectron2 when none is importable
#                          (default: "sal-detectron2==0.7.2"; see INSTALL.md for the official route)
#
# A torch/torchvision/detectron2 that $PYTHON can already import (for example your own CUDA
# builds) is reused: the venv is then created with --system-site-packages and nothing is
# reinstalled over it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${MASKFORMER_VENV:-$ROOT/.venv}"
TORCH_SPEC="${MASKFORMER_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
D2_SPEC="${MASKFORMER_D2_SPEC:-sal-detectron2==0.7.2}"

log() { echo "[setup] $*" >&2; }

stamp_key="$(cat "$ROOT/pyproject.toml" "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16)"
STAMP="$VENV/.maskformer-setup-$stamp_key"
if [[ -f "$STAMP" ]]; then
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "error: interpreter '$PYTHON' not found; set PYTHON=/path/to/python3 (3.9 or newer)"
  exit 1
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' 2>/dev/null || {
  log "error: $PYTHON is $("$PYTHON" -V 2>&1); MaskFormer needs Python 3.9 or newer"
  exit 1
}

has_module() { "$1" -c "import $2" >/dev/null 2>&1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  venv_args=()
  if has_module "$PYTHON" torch && has_module "$PYTHON" torchvision; then
    log "reusing the torch/torchvision importable by $PYTHON (venv with system site-packages)"
    venv_args+=(--system-site-packages)
  fi
  log "creating $VENV"
  "$PYTHON" -m venv "${venv_args[@]}" "$VENV"
fi
VPY="$VENV/bin/python"
pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }

if ! (has_module "$VPY" torch && has_module "$VPY" torchvision); then
  log "installing $TORCH_SPEC (about a minute; several GB)"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  pip_install $TORCH_SPEC
fi

if ! has_module "$VPY" detectron2; then
  log "installing detectron2 from the registry package $D2_SPEC"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The registry wheel is tagged cp310 only because of its compiled extension, which MaskFormer
  # does not use; its Python code runs on newer interpreters. Only the detectron2 package is kept
  # (the wheel also carries an unrelated top-level 'tools' package).
  "$VPY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
    --python-version 3.10 -d "$tmp/dl" "$D2_SPEC"
  "$VPY" -m zipfile -e "$tmp"/dl/*.whl "$tmp/wheel"
  rm -f "$tmp"/wheel/detectron2/_C*.so
  site="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  rm -rf "$site/detectron2.partial"
  cp -r "$tmp/wheel/detectron2" "$site/detectron2.partial"
  mv "$site/detectron2.partial" "$site/detectron2"
  # What detectron2's own metadata would have installed (setuptools<81 keeps pkg_resources).
  pip_install "setuptools<81" fvcore iopath pycocotools yacs termcolor tabulate cloudpickle tqdm \
    "omegaconf>=2.1,<2.4" hydra-core matplotlib pillow
fi

if ! has_module "$VPY" panopticapi; then
  # panopticapi-lite pins numpy<2 in its metadata but works with numpy 2; --no-deps keeps the
  # numpy that torch and opencv need.
  pip_install --no-deps panopticapi-lite
fi

log "installing maskformer and its dependencies"
pip_install -e "$ROOT[test]"

"$VPY" - <<'EOF'
import detectron2, torch, torchvision
import maskformer  # noqa: F401  (registers the MaskFormer modules)
print(f"[setup] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"detectron2 {detectron2.__version__}", flush=True)
EOF
rm -f "$VENV"/.maskformer-setup-*
touch "$STAMP"
