#!/usr/bin/env bash
# Builds every fuzz/fuzz_*.cc target (clang, libFuzzer, ASan) in a separate build dir and runs each for a
# bounded time. Fails if any target finds a crash (the reproducer is kept under $BUILD/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every fuzz_* target)
#   env: FUZZ_BUILD_DIR (default build-fuzz), FLUX_SHARED_DIR (seeds from shared/golden), JOBS (default 2)
#
# Needs clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
shared=${FLUX_SHARED_DIR:-$root/../shared}
jobs=${JOBS:-2}

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

# The libraries get coverage instrumentation too (fuzzer-no-link), or libFuzzer would fuzz blind.
# Boost 1.74 Asio only detects C++20 coroutines for clang with libc++; with libstdc++ they must be named.
mkdir -p "$build"
cxx_flags="-fsanitize=fuzzer-no-link -DBOOST_ASIO_HAS_CO_AWAIT -DBOOST_ASIO_HAS_STD_COROUTINE"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DFLUX_FUZZ=ON -DFLUX_TESTS=OFF -DFLUX_BENCH=OFF \
  -DFLUX_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link "-DCMAKE_CXX_FLAGS=$cxx_flags" >"$build/cmake.log" 2>&1 ||
  { cat "$build/cmake.log" >&2; exit 2; }

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for src in "$root"/fuzz/fuzz_*.cc; do
    [ -e "$src" ] && targets+=("$(basename "$src" .cc)")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz/fuzz_*.cc targets" >&2; exit 2; }
ninja -C "$build" -j"$jobs" "${targets[@]}"

# Seeds: fuzz/seeds/<target>/ if present, plus target-specific ones made here.
seed_target() {
  local target=$1 dir=$2
  if [ -d "$root/fuzz/seeds/$target" ]; then cp -f "$root/fuzz/seeds/$target"/* "$dir"/ 2>/dev/null || true; fi
  case $target in
    fuzz_safetensors)
      # Small real files (<= 40 KiB keeps -max_len reasonable) and a few hand-made headers.
      if [ -d "$shared/golden" ]; then
        find "$shared/golden" -name '*.safetensors' -size -40k -exec cp -f {} "$dir"/ \;
      fi
      local h
      for h in '{}' '{"__metadata__":{"format":"pt"}}' \
               '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}' \
               '{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}'; do
        # 8-byte little-endian length, header, 16 data bytes.
        local n=${#h} f="$dir/hand_$(printf '%s' "$h" | cksum | cut -d' ' -f1)"
        { printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8)))"
          printf '%s' "$h"; head -c 16 /dev/zero; } >"$f"
      done
      ;;
  esac
}

write_dict() {
  case $1 in
    fuzz_safetensors)
      printf '%s\n' '"dtype"' '"shape"' '"data_offsets"' '"__metadata__"' '"F64"' '"F32"' '"F16"' '"BF16"' \
        '"F8_E4M3"' '"I64"' '"I32"' '"I16"' '"I8"' '"U8"' '"BOOL"' '"{"' '"}"' '"["' '"]"' '":"' '","' >"$2"
      return 0 ;;
  esac
  [ -f "$root/fuzz/$1.dict" ] && cp "$root/fuzz/$1.dict" "$2" && return 0
  return 1
}

failed=()
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  seed_target "$target" "$corpus"
  args=(-max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20)
  if write_dict "$target" "$build/$target.dict"; then args+=(-dict="$build/$target.dict"); fi
  echo "== $target: ${seconds}s, corpus $(ls "$corpus" | wc -l) files"
  if ! "$build/fuzz/$target" "${args[@]}" "$corpus" >"$build/$target.log" 2>&1; then
    echo "== $target: FAILED (see $build/$target.log; reproducers in $artifacts)" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$build/$target.log" | head -20 >&2 || true
    failed+=("$target")
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$build/$target.log" | tail -3 || true
    echo "== $target: ok"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s without a crash"
