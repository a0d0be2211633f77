#!/usr/bin/env bash
# Builds fluxcpp with AddressSanitizer and runs `fluxcpp info` on malformed safetensors files: each must exit 1
# with one "fluxcpp: error: <file>: ..." line and no sanitizer report; good files exit 0.
#   scripts/check_info_asan.sh [BUILD_DIR]   (default build-asan, configured exactly as scripts/sanitize.sh
#                                             configures it, so the two share the folder in any order)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-asan}
shared=${FLUX_SHARED_DIR:-$root/../shared}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLUX_SANITIZE=address -DFLUX_BENCH=OFF \
  >/dev/null
ninja -C "$build" -j"${JOBS:-2}" fluxcpp >/dev/null
bin=$build/src/cli/fluxcpp
[ -x "$bin" ] || bin=$(find "$build" -name fluxcpp -type f -perm -u+x | head -1)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Header with its 8-byte little-endian length, then N zero data bytes: mk NAME HEADER N
mk() {
  local n=${#2}
  { printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8)))"
    printf '%s' "$2"; head -c "$3" /dev/zero; } >"$tmp/$1.safetensors"
}
: >"$tmp/empty.safetensors"
printf 'abc' >"$tmp/short.safetensors"
printf '\xff\x00\x00\x00\x00\x00\x00\x00{}' >"$tmp/length_beyond.safetensors"
printf '\xff\xff\xff\xff\xff\xff\xff\xff{}' >"$tmp/huge_length.safetensors"
mk bad_json '{"w": {' 0
mk not_object '[1]' 0
mk deep "$(printf '[%.0s' {1..5000})" 0
mk missing_field '{"w": {"shape": [1], "data_offsets": [0, 4]}}' 4
mk unknown_dtype '{"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}}' 4
mk negative_dim '{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}' 4
mk five_dims '{"w": {"dtype": "U8", "shape": [1,1,1,1,1], "data_offsets": [0, 1]}}' 1
mk overflow '{"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}' 8
mk beyond_data '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}' 0
mk size_mismatch '{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}' 8
mk reversed '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}' 8
mk overlap '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}' 8
mk duplicate '{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}' 2
mk bad_metadata '{"__metadata__": {"k": 1}}' 0

bad=0
for f in "$tmp"/*.safetensors; do
  set +e
  "$bin" info "$f" >"$tmp/out" 2>"$tmp/err"
  status=$?
  set -e
  lines=$(wc -l <"$tmp/err")
  if [ "$status" -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q "^fluxcpp: error: $f: " "$tmp/err" || grep -q Sanitizer "$tmp/err"; then
    echo "FAIL $(basename "$f"): exit $status, stderr:"; cat "$tmp/err"; bad=1
  else
    echo "ok   $(basename "$f"): $(cut -c1-150 "$tmp/err")"
  fi
done
for good in "$shared/golden/clip.safetensors" "$shared/golden/models/FLUX.1-dev"; do
  [ -e "$good" ] || continue
  if "$bin" info --summary "$good" >"$tmp/out" 2>"$tmp/err"; then echo "ok   $good: $(tail -1 "$tmp/out")"
  else echo "FAIL $good:"; cat "$tmp/err"; bad=1; fi
done
[ $bad -eq 0 ] && echo "check_info_asan: all good" || { echo "check_info_asan: FAILED"; exit 1; }
