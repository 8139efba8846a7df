#!/usr/bin/env bash
# Installs the moto AWS emulator into the project-local virtualenv .venv/.
# Idempotent: a second call with the pinned version already present does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION="5.2.5"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/moto_server ] && .venv/bin/python -c "import moto,sys,jsonschema,yaml; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  exit 0
fi
"$PY" -m venv .venv
# jsonschema and pyyaml (also pulled in by moto[server]) check the shipped
# playbooks against schemas/ (scripts/check-schemas.py).
# breakglass learns the port moto picked from werkzeug's start-up line
# (" * Running on http://127.0.0.1:PORT", src/tabletop/emulator.rs); werkzeug
# is held to the major version that line was checked against.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "werkzeug>=3,<4" "jsonschema>=4.18,<5" "pyyaml>=6,<7"
echo "moto $MOTO_VERSION installed in .venv/" >&2
