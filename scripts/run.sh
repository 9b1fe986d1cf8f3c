#!/usr/bin/env bash
# Set up (when needed) and run the whole pipeline on the embedded default: the README's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export ANNY_CACHE_DIR="$PWD/data/cache/anny"
dvc repro "$@"
