#!/usr/bin/env bash
# The web page in a real browser: Debian's headless Chromium driven by playwright-core (tests/browser/
# page_test.mjs) against `fluxcpp serve` on a tiny test model. Checks generate / progress / previews / final
# image, queue and cancel, history across a reload, the refused and unreachable states and their recovery;
# saves screenshots (desktop 1280x900, phone 390x844, light and dark) and the server's log into
# ${FLUX_LOG_DIR:-logs}/browser/. Exits non-zero on any failed check.
#   scripts/browser_test.sh            (FLUXCPP=path/to/fluxcpp to test another build; default build/)
# Needs: apt `chromium` and `nodejs` + `npm`; npm `playwright-core` (tests/browser/package-lock.json). Each is
# installed here only when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${FLUXCPP:-$root/build/src/cli/fluxcpp}"
shots="${FLUX_LOG_DIR:-$root/logs}/browser"
chromium="${CHROMIUM:-/usr/bin/chromium}"
[[ -x "$bin" ]] || { echo "browser_test: $bin not found: build fluxcpp first (scripts/setup.sh)" >&2; exit 1; }

missing=()
[[ -x "$chromium" ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "browser_test: installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "browser_test: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
if [[ ! -f "$root/tests/browser/node_modules/playwright-core/package.json" ]]; then
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "browser_test: npm ci in tests/browser failed" >&2; exit 1; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" make-test-model "$tmp/model" >/dev/null
"$bin" make-test-model --variant dev "$tmp/model-dev" >/dev/null
# An adapter that fits the tiny model, from the golden data when it is beside the clone (the picker test).
shared="${FLUX_SHARED_DIR:-$root/../shared}"
if [[ -f "$shared/golden/lora/lora_a_kohya.safetensors" ]]; then
  mkdir -p "$tmp/loras"
  cp "$shared/golden/lora/lora_a_kohya.safetensors" "$tmp/loras/style_a.safetensors"
  export FLUX_TEST_LORA_DIR="$tmp/loras"
fi
mkdir -p "$shots"
FLUXCPP="$bin" FLUX_TEST_MODEL="$tmp/model" FLUX_TEST_MODEL_DEV="$tmp/model-dev" SHOTS="$shots" CHROMIUM="$chromium" \
  timeout 900 node "$root/tests/browser/page_test.mjs" ||
  { echo "browser_test: FAILED (screenshots and the server's log: $shots)" >&2; exit 1; }
