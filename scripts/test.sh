#!/usr/bin/env bash
# The whole test suite: install into ./.venv with test extras, lint, then pytest.
# Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth, database
# `test`); override with ARACHNE_TEST_REDIS_URL / ARACHNE_TEST_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
