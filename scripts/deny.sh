#!/usr/bin/env bash
# Supply chain (deny.toml): RustSec advisories against the live database when
# it can be fetched, else against the snapshot beside the checkout
# (../shared/advisory-db, or BREAKGLASS_ADVISORY_DB) with scripts/advisories.py;
# either way a line says which database and commit were used, and an unignored
# advisory fails. Then licenses, duplicate crates and sources with cargo-deny.
# With no database at all, advisories are NOT CHECKED, loudly; set
# BREAKGLASS_REQUIRE_ADVISORIES=1 to make that a failure (release builds).
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot="${BREAKGLASS_ADVISORY_DB:-../shared/advisory-db}"
have_deny=1
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked || have_deny=0
if [ "$have_deny" = 1 ] && cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
  db="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/*/ 2>/dev/null | head -1)"
  commit="$(git -C "$db" log -1 --format='%H, %cs' 2>/dev/null || echo unknown)"
  echo "advisories: checked against the live RustSec database ${db:-(github.com/rustsec/advisory-db)} (commit $commit)"
elif [ -d "$snapshot/crates" ]; then
  python3 scripts/advisories.py "$snapshot" "$snapshot.SOURCE"
else
  echo "advisories: NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) is unreachable from here and no snapshot is at $snapshot" >&2
  if [ -n "${BREAKGLASS_REQUIRE_ADVISORIES:-}" ]; then exit 1; fi
fi
if [ "$have_deny" = 0 ]; then
  echo "supply chain: cargo-deny could not be installed: licenses, bans and sources NOT CHECKED" >&2
  exit 1
fi
cargo deny --log-level error check licenses bans sources
