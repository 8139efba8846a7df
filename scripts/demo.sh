#!/usr/bin/env bash
# The main job on a fresh machine: a tabletop exercise. Installs the emulator,
# builds breakglass, and runs playbooks/full-lockdown.yaml live against a local
# moto seeded with scenarios/code-spaces.yaml while the scripted attacker
# moves; prints the report and writes it as Markdown and HTML under
# breakglass-audit/. breakglass starts and stops the emulator itself and
# refuses any other endpoint: nothing here can reach AWS.
#   ./scripts/demo.sh [--keep] [--hold 10s] [--report PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-emulator.sh
cargo build --quiet
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
status=0
./target/debug/breakglass tabletop playbooks/full-lockdown.yaml \
  --scenario scenarios/code-spaces.yaml "$@" || status=$?
# Exit 1 means the exercise found something left exposed (the report says
# what and why): that is the exercise working. Anything else is a failure.
if [ "$status" -le 1 ]; then exit 0; fi
exit "$status"
