#!/usr/bin/env bash
# The containment benchmark: full-lockdown on a seeded moto estate behind a
# proxy with AWS-like latency and token buckets (see README, "Benchmark").
#   scripts/bench.sh            the default `small` workload (about 7 minutes,
#                               plus a release build with thin LTO the first time)
#   scripts/bench.sh tiny       a quick run
#   scripts/bench.sh plan-memory   peak memory of a plan over 10,000 users
#   scripts/bench.sh org        credential-lockdown across 50 member accounts
#                               × 20 users against its two floors (issue 7)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-emulator.sh
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
export AWS_EC2_METADATA_DISABLED=true
case "${1:-small}" in
  plan-memory) cargo bench --bench lockdown -- --plan-principals 10000 ;;
  org) cargo bench --bench fanout -- "${@:2}" ;;
  *) cargo bench --bench lockdown -- --size "${1:-small}" "${@:2}" ;;
esac
