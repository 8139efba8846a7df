#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the emulator into .venv/,
# builds, and runs every test (unit, parser, fault injection, and end-to-end
# against moto servers the harness starts on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-emulator.sh
# No test may reach AWS: credentials and endpoints come only from the harness.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
export AWS_EC2_METADATA_DISABLED=true
cargo test --all-targets "$@"
