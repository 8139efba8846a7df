#!/usr/bin/env bash
# Supply chain (deny.toml): licenses, duplicate crates and sources always; the
# RustSec advisories against the live database when it can be fetched, else
# against the snapshot beside the checkout (../shared/advisory-db, or
# BREAKGLASS_ADVISORY_DB) with scripts/advisories.py. Either way the last line
# says which database (and commit) was used; an unignored advisory fails.
# With neither, advisories are NOT CHECKED, loudly; set
# BREAKGLASS_REQUIRE_ADVISORIES=1 to make that a failure (release builds).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny --log-level error check licenses bans sources
snapshot="${BREAKGLASS_ADVISORY_DB:-../shared/advisory-db}"
if cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
  echo "advisories: checked against the live RustSec database (github.com/rustsec/advisory-db)"
elif [ -d "$snapshot/crates" ]; then
  python3 scripts/advisories.py "$snapshot" "$snapshot.SOURCE"
else
  echo "advisories: NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) is unreachable from here and no snapshot is at $snapshot" >&2
  if [ -n "${BREAKGLASS_REQUIRE_ADVISORIES:-}" ]; then exit 1; fi
fi
