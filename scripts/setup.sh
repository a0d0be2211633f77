#!/usr/bin/env bash
# Installs every Debian package fluxcpp's build, demo, tests, README examples and CI steps use, checks that
# each one is there, and builds fluxcpp (Release) into build/. Works on a fresh Debian 12 (bookworm) as root
# or with sudo; safe to run again.
#   FLUX_SKIP_APT=1    install nothing, only check (prints the apt-get command for whatever is missing)
#   FLUX_SKIP_BUILD=1  packages only
#   FLUX_BUILD_DIR     build folder (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each package, and what needs it. Nothing here is optional: scripts/fresh_check.sh fails without any one.
packages=(
  g++ cmake ninja-build     # the build
  pkg-config                # finds sentencepiece and libcurl
  libcurl4-openssl-dev      # models by name: downloads from the Hugging Face hub (src/hub/)
  libdnnl-dev               # oneDNN: the matrix products (found by header + library, see cmake/dependencies.cmake)
  libboost-dev              # Asio + Beast (header-only): the HTTP server
  nlohmann-json3-dev        # JSON: configs, the HTTP API
  libcli11-dev              # the command line
  libsentencepiece-dev      # the T5 tokenizer, and the trainer of the test tokenizers
  libicu-dev                # Unicode classes, case folding and normalisation of the CLIP tokenizer
  libpng-dev libjpeg-dev    # images in and out
  libgtest-dev              # the tests
  clang libclang-rt-14-dev  # libFuzzer and clang's sanitizer runtimes (scripts/fuzz.sh)
  libomp-14-dev             # OpenMP for the clang build of scripts/fuzz.sh
  curl jq                   # the README's server examples
  libhiredis-dev            # Redis client of serve --role api|worker (src/cluster)
  redis-server              # the cluster tests (tests/cluster) start one on a free port
)

missing_packages() {
  local p
  for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || echo "$p"
  done
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "setup: this script installs Debian packages with apt-get (Debian 12 or a derivative); on another" >&2
  echo "       system install the equivalents of: ${packages[*]}" >&2
  exit 1
fi

if [ "${FLUX_SKIP_APT:-0}" != 1 ]; then
  mapfile -t need < <(missing_packages)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null || { echo "setup: not root and no sudo: run as root: apt-get install ${need[*]}" >&2; exit 1; }
      sudo=sudo
    fi
    echo "setup: installing ${#need[@]} Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q || { echo "setup: apt-get update failed (network? /etc/apt/sources.list?)" >&2; exit 1; }
    $sudo apt-get install -y -q --no-install-recommends "${need[@]}" ||
      { echo "setup: apt-get install failed for: ${need[*]}" >&2; exit 1; }
  else
    echo "setup: all ${#packages[@]} Debian packages are installed"
  fi
fi
mapfile -t still < <(missing_packages)
if [ ${#still[@]} -gt 0 ]; then
  echo "setup: missing Debian packages: ${still[*]}" >&2
  echo "       install them with: apt-get install --no-install-recommends ${still[*]}" >&2
  exit 1
fi

[ "${FLUX_SKIP_BUILD:-0}" = 1 ] && exit 0
build_dir=${FLUX_BUILD_DIR:-build}
werror=OFF
if [ "${CI:-}" = true ]; then werror=ON; fi
echo "setup: building into $build_dir/ ($(nproc) jobs)"
if ! cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLUX_WERROR=$werror >"$build_dir.cmake.log" 2>&1; then
  # Our own message (cmake/dependencies.cmake) when a package is missing, else CMake's errors.
  grep -A2 '^  fluxcpp: ' "$build_dir.cmake.log" >&2 || grep -v '^--' "$build_dir.cmake.log" >&2
  echo "setup: CMake configure failed (full log: $build_dir.cmake.log)" >&2
  exit 1
fi
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/src/cli/fluxcpp"
