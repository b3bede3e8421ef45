#!/usr/bin/env bash
# Create .venv with a CPU build of torch and softwidth (editable) plus the given extras; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build on these machines.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
