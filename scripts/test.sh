#!/usr/bin/env bash
# Set up (when needed) and run the test suite: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export ANNY_CACHE_DIR="$PWD/data/cache/anny"
ruff check .
# The package layering (pyproject.toml [tool.importlinter]); quiet unless a contract breaks.
lint-imports --no-cache > .venv/lint-imports.log 2>&1 || { cat .venv/lint-imports.log; exit 1; }
python -m pytest -q "$@"
