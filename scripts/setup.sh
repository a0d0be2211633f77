#!/usr/bin/env bash
# Installs every Debian package fluxcpp needs and builds it (Release) into build/.
# FLUX_SKIP_APT=1 skips the package step; FLUX_BUILD_DIR overrides build/.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  libdnnl-dev            # oneDNN: the matrix products
  libboost-dev libboost-system-dev  # Asio + Beast: the HTTP server
  nlohmann-json3-dev libcli11-dev
  libsentencepiece-dev   # the T5 tokenizer
  libicu-dev             # Unicode classes, case folding and normalisation for the CLIP tokenizer
  libpng-dev libjpeg-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # libFuzzer and sanitizers (scripts/fuzz.sh, scripts/sanitize.sh)
)

if [ "${FLUX_SKIP_APT:-0}" != 1 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${packages[@]}"
fi

build_dir=${FLUX_BUILD_DIR:-build}
werror=OFF
if [ "${CI:-}" = true ]; then werror=ON; fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLUX_WERROR=$werror
cmake --build "$build_dir" -j "$(nproc)"
echo "built: $build_dir/src/cli/fluxcpp"
