#!/usr/bin/env bash
# Runs every test (ctest) on the build made by scripts/setup.sh (built first if needed).
# Tests read ../shared (golden tensors, tokenizers): set FLUX_SHARED_DIR if it lives elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${FLUX_BUILD_DIR:-build}
if [ ! -f "$build_dir/build.ninja" ]; then
  FLUX_SKIP_APT=${FLUX_SKIP_APT:-1} bash scripts/setup.sh
fi
cmake --build "$build_dir" -j "$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" --timeout 600
