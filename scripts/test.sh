#!/usr/bin/env bash
# Set up (when needed) and run the test suite: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export ANNY_CACHE_DIR="$PWD/data/cache/anny"
ruff check .
python -m pytest -q "$@"
