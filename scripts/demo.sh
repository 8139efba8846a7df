#!/usr/bin/env bash
# The tabletop demo on a fresh machine: installs the emulator, builds
# breakglass, starts moto on a free loopback port, seeds a compromised
# account, and runs playbooks/credential-lockdown.yaml live against it.
# Nothing here can reach AWS: the endpoint is the emulator this script starts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-emulator.sh
cargo build --quiet
BG="$PWD/target/debug/breakglass"

unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
export AWS_EC2_METADATA_DISABLED=true
work="$(mktemp -d)"
port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -sf "$endpoint/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done

read -r key secret < <(.venv/bin/python scripts/seed_demo.py "$endpoint")
printf '[breakglass]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" >"$work/credentials"
printf '[profile breakglass]\nregion = us-east-1\n' >"$work/config"
export AWS_SHARED_CREDENTIALS_FILE="$work/credentials" AWS_CONFIG_FILE="$work/config"

playbook=playbooks/credential-lockdown.yaml
mkdir -p breakglass-audit
audit="breakglass-audit/demo-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "== emulator at $endpoint; playbook $playbook"
"$BG" validate "$playbook"
echo; echo "== plan"
"$BG" --endpoint-url "$endpoint" plan "$playbook" --var case_id=TABLETOP-1
echo; echo "== live run against the emulator"
status=0
# moto does not implement iam:SimulatePrincipalPolicy, which the permission
# preflight asks before a live run: against the emulator, skip it.
"$BG" --endpoint-url "$endpoint" run "$playbook" --var case_id=TABLETOP-1 --yes --skip-preflight --audit-log "$audit" || status=$?
echo; echo "== audit log"
"$BG" audit verify "$audit"
echo "timeline: $BG audit show $audit"
exit "$status"
