#!/usr/bin/env bash
# Builds the engine and server tests under ThreadSanitizer and AddressSanitizer (separate build dirs next to
# the source: build-tsan, build-asan) and runs them. Usage: scripts/sanitize.sh [thread|address ...]
# Env: JOBS (ninja -j, default 2), GTEST_FILTER (optional).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="${JOBS:-2}"
sanitizers=("$@")
[ ${#sanitizers[@]} -eq 0 ] && sanitizers=(thread address)

for s in "${sanitizers[@]}"; do
  case "$s" in
    thread) dir="$root/build-tsan" ;;
    address) dir="$root/build-asan" ;;
    *) echo "sanitize.sh: unknown sanitizer '$s' (expected thread or address)" >&2; exit 2 ;;
  esac
  echo "== $s: configuring $dir"
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLUX_SANITIZE="$s" -DFLUX_BENCH=OFF >/dev/null
  echo "== $s: building test_engine test_server fluxcpp"
  ninja -C "$dir" -j "$jobs" test_engine test_server fluxcpp
  # The kernel pool runs on OpenMP (libgomp), which is not instrumented: its hand-offs would read as races.
  # Under TSan the server computes on one thread (no OpenMP team); the engine's and the server's own threads
  # (I/O, loader, worker, shutdown) are all still checked.
  if [ "$s" = thread ]; then export FLUX_TEST_THREADS=1; else unset FLUX_TEST_THREADS; fi
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
  export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}"
  for t in test_engine test_server; do
    echo "== $s: $t"
    "$dir/tests/$t" ${GTEST_FILTER:+--gtest_filter="$GTEST_FILTER"}
  done
done
echo "== sanitizers passed: ${sanitizers[*]}"
