#!/usr/bin/env bash
# Install segsync into ./.venv and run a full sync of config.example.toml on the bundled
# sample CRM export, printing the plan and the result. Extra arguments go to `segsync sync`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/segsync sync --config config.example.toml "$@"
