#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install occluded-reid with its test extras.
# Usage: bash scripts/setup.sh        (VENV=path to put the environment elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
# torch/torchvision first, at the versions this project is tested with, unless a working pair is
# already there (a CUDA or CPU build both work; the code picks the GPU when there is one).
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "setup: installing torch and torchvision (large download on a machine without a local copy)" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[test]"
"$VENV/bin/python" -c "import occsim, reid, cv2, h5py; print('setup: ok, torch', __import__('torch').__version__)" >&2
