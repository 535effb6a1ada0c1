#!/usr/bin/env bash
# One-time set-up: a virtual environment with the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, alone: pip takes the pinned torch/torchvision from the machine's disk where present
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -r requirements-dev.txt
python -m pip install -q --no-deps -e .
