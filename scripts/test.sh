#!/usr/bin/env bash
# The README's test command: the fast default suite (slow/gpu/browser tests are opt-in markers).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] && . .venv/bin/activate
python -m pytest -q "$@"
