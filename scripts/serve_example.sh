#!/usr/bin/env bash
# Runs the README's "Serve" examples (curl + jq) against a running-for-the-occasion `fluxcpp serve` on the
# demo's test model, and checks each answer. Needs scripts/setup.sh and scripts/demo.sh to have run.
#   scripts/serve_example.sh [MODEL_DIR]     (default: out/test-model-tiny, made by scripts/demo.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${FLUXCPP:-$root/build/src/cli/fluxcpp}"
model="${1:-$root/out/test-model-tiny}"
[[ -x "$bin" ]] || { echo "serve_example: $bin not found: run scripts/setup.sh" >&2; exit 1; }
[[ -d "$model" ]] || { echo "serve_example: no model at $model: run scripts/demo.sh" >&2; exit 1; }
for tool in curl jq base64; do
  command -v $tool >/dev/null || { echo "serve_example: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "serve_example: FAILED: $*" >&2; [[ -f "$tmp/server.log" ]] && tail -20 "$tmp/server.log" >&2; exit 1; }

"$bin" serve --model "$model" --host 127.0.0.1 --port 0 >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  sleep 0.1
done
[[ -n "${port:-}" ]] || fail "the server did not print its port"
url="http://127.0.0.1:$port"
echo "serve_example: server at $url"

# The README's commands, with their answers checked.
curl -sf "$url/health" | jq -e '.status == "loading" or .status == "ready"' >/dev/null || fail "/health"
for _ in $(seq 300); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$url/ready" >/dev/null || fail "/ready never answered 200"
curl -s "$url/v1/images/generations" -d '{"prompt": "a red fox", "size": "64x64", "seed": 1}' |
  jq -r '.data[0].b64_json' | base64 -d >"$tmp/fox.png"
[[ "$(head -c 8 "$tmp/fox.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] || fail "no PNG from /v1/images/generations"
id=$(curl -s "$url/v1/jobs" -d '{"prompt": "a red fox", "width": 64, "height": 64, "preview": true}' | jq -r .id)
[[ -n "$id" && "$id" != null ]] || fail "POST /v1/jobs gave no id"
events=$(curl -sN --max-time 60 "$url/v1/jobs/$id/events")
for e in started step completed; do
  grep -q "^event: $e" <<<"$events" || fail "the event stream of job $id has no '$e' event"
done
curl -sf "$url/v1/jobs/$id/image" -o "$tmp/job.png" || fail "GET /v1/jobs/$id/image"
echo "serve_example: /health, /ready, /v1/images/generations (PNG $(wc -c <"$tmp/fox.png") bytes), /v1/jobs + events + image: ok"
