#!/usr/bin/env bash
# Create .venv with a CPU build of torch, the softwidth library and softwidth-studies (both editable: ./ and
# ./studies) plus the given extras of each; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build on these machines.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}" -e "./studies${extras:+[$extras]}"
# The extras (lightning, ray[tune], tensorboard in `test`) accept torch 2.13.0: check none swapped in a CUDA build.
.venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda and f'setup: torch {torch.__version__} (CUDA) replaced the CPU wheel')"
# WORLD resynthesis (an anti-spoofing attack) needs pyworld, which builds from source with setuptools < 81.
if [[ "$extras" == *test* ]] && ! .venv/bin/python -c "import pyworld" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "setuptools<81" "numpy>=1.24" "cython>=3"
    .venv/bin/python -m pip install --quiet --no-build-isolation "pyworld>=0.3"
fi
