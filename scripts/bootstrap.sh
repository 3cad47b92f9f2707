#!/usr/bin/env bash
# Create ./.venv (if missing) and install Arachne into it. Usage: scripts/bootstrap.sh [extras]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
# Skip the slow pip run when this exact pyproject.toml is already installed.
stamp=".venv/.arachne-installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  echo "installing Arachne into .venv (first run compiles pdqhash; a minute or two) ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e "$spec" >&2
  touch "$stamp"
fi
