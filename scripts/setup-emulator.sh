#!/usr/bin/env bash
# Installs the moto AWS emulator into the project-local virtualenv .venv/.
# Idempotent: a second call with the pinned version already present does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION="5.2.5"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/moto_server ] && .venv/bin/python -c "import moto,sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  exit 0
fi
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
echo "moto $MOTO_VERSION installed in .venv/" >&2
