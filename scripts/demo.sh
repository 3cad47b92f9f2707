#!/usr/bin/env bash
# One command for the demo on a fresh machine: install into ./.venv, then `arachne demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/arachne demo "$@"
