#!/usr/bin/env bash
# Coverage-guided fuzzing of playbook parsing and validation with libFuzzer
# (cargo fuzz, nightly toolchain). Not part of the test suite: the suite runs
# the checked-in corpus and seeded mutations on stable (tests/robustness.rs).
#
#   scripts/fuzz.sh [SECONDS]     default 600; prints inputs tried at the end
#
# Seeds: the shipped playbooks and tests/corpus/playbook. New interesting
# inputs go to fuzz/corpus/playbook (not committed); a crash is written to
# fuzz/artifacts/playbook/ and should become a file in tests/corpus/playbook.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/playbook
cargo +nightly fuzz run playbook fuzz/corpus/playbook playbooks tests/corpus/playbook -- \
  -dict=fuzz/yaml.dict -max_len=65536 -rss_limit_mb=512 -timeout=5 \
  -max_total_time="$secs" -print_final_stats=1
