#!/usr/bin/env bash
# Real clients against `fluxcpp serve` (issue 14, "Done when"): makes a tiny random-weight model, starts the server on
# a free loopback port with an API key and Basic credentials, then runs
#   tests/clients/a1111_openwebui.mjs  /sdapi/v1 exactly as Open WebUI's AUTOMATIC1111 image engine calls it, with
#                                      /sdapi/v1/progress polled for a step preview while the image is made
#   tests/clients/openai_images.mjs    the official `openai` npm client on /v1/images/generations (plain and stream)
# Exits non-zero when a check fails (the server's log tail is printed).
#   scripts/client_checks.sh [BUILD_DIR]        (default build; env FLUXCPP: the binary; LOG_DIR: keep the logs there)
# Needs node >= 20 and npm (the openai package is installed from tests/clients/package-lock.json with `npm ci`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
bin="${FLUXCPP:-$build/src/cli/fluxcpp}"
clients="$root/tests/clients"
[[ -x "$bin" ]] || { echo "client_checks: $bin not found (build the fluxcpp target)" >&2; exit 2; }
command -v node >/dev/null || { echo "client_checks: node not found (apt-get install nodejs npm)" >&2; exit 2; }
[[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]] || { echo "client_checks: node >= 20 needed (fetch)" >&2; exit 2; }

tmp=$(mktemp -d)
log_dir="${LOG_DIR:-$tmp}"
mkdir -p "$log_dir"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "client_checks: FAILED: $*" >&2
  [[ -f "$log_dir/client_checks_server.log" ]] && tail -30 "$log_dir/client_checks_server.log" >&2
  exit 1
}

if [[ ! -d "$clients/node_modules/openai" ]]; then
  (cd "$clients" && npm ci --no-audit --no-fund >"$log_dir/client_checks_npm.log" 2>&1) ||
    { cat "$log_dir/client_checks_npm.log" >&2; fail "npm ci in tests/clients"; }
fi

"$bin" make-test-model "$tmp/model" >"$log_dir/client_checks_model.log" 2>&1 || fail "fluxcpp make-test-model"
# Credentials as a deployment beyond loopback has them: a bearer key (OpenAI SDK) and Basic auth (Open WebUI's
# AUTOMATIC1111_API_AUTH).
key="client-checks-$RANDOM$RANDOM"
basic="openwebui:pw-$RANDOM$RANDOM"
"$bin" serve --model "$tmp/model" --host 127.0.0.1 --port 0 --max-pixels 262144 --api-key "$key" --api-auth "$basic" \
  >"$log_dir/client_checks_server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log_dir/client_checks_server.log" | head -1)
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  sleep 0.1
done
[[ -n "$port" ]] || fail "the server did not print its port"
url="http://127.0.0.1:$port"
ready=0
for _ in $(seq 600); do
  if node -e "fetch('$url/ready').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"; then ready=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited while loading"
  sleep 0.2
done
[[ $ready == 1 ]] || fail "$url/ready never answered 200"
echo "client_checks: server at $url"

status=0
A1111_API_AUTH="$basic" node "$clients/a1111_openwebui.mjs" "$url" ||
  { echo "client_checks: a1111_openwebui.mjs FAILED" >&2; status=1; }
FLUX_API_KEY="$key" node "$clients/openai_images.mjs" "$url" ||
  { echo "client_checks: openai_images.mjs FAILED" >&2; status=1; }
[[ $status == 0 ]] || fail "see above"
echo "client_checks: ok"
