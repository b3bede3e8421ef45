#!/usr/bin/env bash
# Set up .venv and run the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/softwidth synthetic --quick "$@"
