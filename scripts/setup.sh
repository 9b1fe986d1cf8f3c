#!/usr/bin/env bash
# Create .venv (when missing) and install the project with its dev tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.texturepose-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # torch is pinned to 2.13.0 in pyproject.toml: on these machines that is the CPU build on
  # local disk; elsewhere pip takes it from PyPI. pip's log (pages of setuptools deprecation
  # notices) is kept in .venv/pip-install.log and shown only when the install fails.
  echo "installing texturepose and its dependencies into .venv (log: .venv/pip-install.log)"
  if ! { python -m pip install -q --upgrade pip && python -m pip install -q -e '.[dev]'; } \
      > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log
    echo "setup failed: pip could not install the project (log above)" >&2
    exit 1
  fi
  touch "$stamp"
fi
# Headless Chromium for the HTML report test (Debian package); skipped when not root/apt.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; the report browser test will be skipped"
fi
export ANNY_CACHE_DIR="$PWD/data/cache/anny"
# Build Anny's cache and the keypoint regressors once per machine (about a minute).
python -c "from texturepose.body import build_body_model; build_body_model('anny')" 2>&1 \
  | grep -v -i -E "warp|cuda|devices|kernel cache|\"cpu\"" || true
