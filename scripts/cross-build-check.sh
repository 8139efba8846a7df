#!/usr/bin/env bash
# The audit log must not depend on how the binary was built (issue 16): the
# binary `cargo test` builds (dev-dependency features unified) and the one a
# plain `cargo build` makes each write a log in a small tabletop against the
# local emulator, and each must verify the other's. Run by .ci/run after the
# test suite; nothing here can reach AWS.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
./scripts/setup-emulator.sh
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
cargo test --quiet --no-run
cp target/debug/breakglass "$work/unified"
cargo build --quiet --bin breakglass
cp target/debug/breakglass "$work/plain"
# Both builds share one audit key, in a home of their own.
bg() {
  BREAKGLASS_MOTO_SERVER="$root/.venv/bin/moto_server" XDG_CONFIG_HOME="$work/config" \
    HOME="$work" NO_COLOR=1 "$@"
}
for build in unified plain; do
  mkdir -p "$work/$build-run"
  (cd "$work/$build-run" && bg "$work/$build" tabletop "$root/playbooks/credential-lockdown.yaml" \
     --scenario "$root/scenarios/leaked-access-key.yaml" --report "$work/$build-report" >/dev/null) || [ $? -le 1 ]
done
for writer in unified plain; do
  log="$(ls "$work/$writer-run"/breakglass-audit/*.jsonl | head -1)"
  for reader in unified plain; do
    bg "$work/$reader" audit verify "$log" >/dev/null \
      || { echo "cross-build: the $reader build does not verify the $writer build's log" >&2; exit 1; }
  done
done
echo "cross-build: the cargo-test and cargo-build binaries verify each other's audit logs"
