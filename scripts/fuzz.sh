#!/usr/bin/env bash
# Coverage-guided fuzzing of playbook and scenario parsing and validation with
# libFuzzer (cargo fuzz, nightly toolchain). Not part of the test suite: the
# suite runs the checked-in corpora and seeded mutations on stable
# (tests/robustness.rs).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default 600 s each for: playbook scenario
#
# Seeds: the shipped playbooks and scenarios and tests/corpus/. New inputs go
# to fuzz/corpus/TARGET (not committed); a crash or out-of-memory input is
# written to fuzz/artifacts/TARGET/ and belongs in tests/corpus/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(playbook scenario)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  case "$t" in
    playbook) seeds=(playbooks tests/corpus/playbook) ;;
    scenario) seeds=(scenarios tests/corpus/scenario) ;;
    *) echo "unknown fuzz target: $t (playbook, scenario)" >&2; exit 2 ;;
  esac
  mkdir -p "fuzz/corpus/$t"
  # A find stops this target, not the others; the exit code reports it.
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -dict=fuzz/yaml.dict -max_len=65536 -rss_limit_mb=512 -timeout=5 \
    -max_total_time="$secs" -print_final_stats=1 || status=1
done
exit "${status:-0}"
