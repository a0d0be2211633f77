#!/usr/bin/env bash
# Proves the README on a new machine: makes a clean Debian 12 root (debootstrap --variant=minbase bookworm,
# nothing added), copies this tree in, and runs inside it, as a new user would:
#   1. bash scripts/setup.sh && bash scripts/demo.sh     from the clone alone (no ../shared)
#   2. bash scripts/serve_example.sh                     the README's curl/jq server examples
#   3. bash scripts/test.sh                              with ../shared beside the clone (read-only)
#   4. bash scripts/fuzz.sh 5 fuzz_safetensors           the clang/libFuzzer toolchain of the CI steps
# Each step is timed; the first failure stops it (exit 1). Needs root (chroot, mounts) and the network to this
# machine's Debian mirror. Mounts are undone and the root removed on any exit.
#   env: FRESH_ROOT       where to build the root (default: a new folder under /var/tmp)
#        FRESH_MIRROR     Debian mirror (default: the one this machine's apt uses)
#        FRESH_CACHE      a tarball of the bare debootstrap root: reused if it exists, else written (for
#                         developers re-running; CI leaves it unset and debootstraps every time)
#        FRESH_KEEP=1     keep the root after the run
#        FLUX_SHARED_DIR  shared/ (default: ../shared beside this tree)
#        FRESH_TEST_LOG   where to copy the tests' output (default: test.log in this tree)
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${FLUX_SHARED_DIR:-$src/../shared}"
test_log="${FRESH_TEST_LOG:-$src/test.log}"
start=$(date +%s)
say() { echo "fresh_check: $* ($(($(date +%s) - start)) s)"; }

[[ "$(id -u)" == 0 ]] || { echo "fresh_check: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
[[ -d "$shared/golden" ]] || { echo "fresh_check: no shared/ at $shared (set FLUX_SHARED_DIR)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
fi

# This machine's Debian mirror: deb822 sources first, then the one-line format.
mirror="${FRESH_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [[ -n "$mirror" ]] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
fi

root="${FRESH_ROOT:-$(mktemp -d /var/tmp/fluxcpp-fresh.XXXXXX)}"
mkdir -p "$root"
[[ -z "$(ls -A "$root")" ]] || { echo "fresh_check: $root is not empty" >&2; exit 1; }
mounted=()
cleanup() {
  local status=$?
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  if [[ "${FRESH_KEEP:-0}" == 1 ]]; then echo "fresh_check: root kept at $root"; else rm -rf --one-file-system "$root"; fi
  exit $status
}
trap cleanup EXIT INT TERM
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounted+=("$2")
  [[ "${3:-}" == ro ]] && mount -o remount,bind,ro "$2"
  return 0
}

if [[ -n "${FRESH_CACHE:-}" && -f "$FRESH_CACHE" ]]; then
  say "unpacking the bare Debian 12 root from $FRESH_CACHE"
  tar -xf "$FRESH_CACHE" -C "$root"
else
  say "debootstrap --variant=minbase bookworm $root $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log" >&2; echo "fresh_check: debootstrap failed" >&2; exit 1; }
  rm -f "$root.debootstrap.log"
  [[ -n "${FRESH_CACHE:-}" ]] && tar -cf "$FRESH_CACHE" -C "$root" . && say "cached the bare root in $FRESH_CACHE"
fi
# apt inside the root reads the same mirror, with bookworm's updates and security suites as here.
security=$(sed -n 's/^URIs:[[:space:]]*\(.*debian-security\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  [[ -n "$security" ]] && echo "deb $security bookworm-security main"
} >"$root/etc/apt/sources.list"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# As in Debian's build chroots and container images: packages installed in the root start no services
# (redis-server's postinst would otherwise start a daemon that outlives this script and holds the mounts).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
bind /proc "$root/proc"
bind /sys "$root/sys"
bind /dev "$root/dev"
[[ -d /dev/pts ]] && bind /dev/pts "$root/dev/pts"

# The tree as a clone has it: tracked files plus new ones not ignored (no build folders, no out/).
mkdir -p "$root/src/fluxcpp"
if [[ -d "$src/.git" ]] && command -v git >/dev/null; then
  git -C "$src" ls-files -z --cached --others --exclude-standard |
    tar -C "$src" --null --no-recursion -T - -cf - | tar -xf - -C "$root/src/fluxcpp"
else
  tar -cf - -C "$src" --exclude='./build*' --exclude=./out --exclude=./.git . | tar -xf - -C "$root/src/fluxcpp"
fi

in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 CI="${CI:-}" /bin/bash -c "cd /src/fluxcpp && $1"; }

say "step 1: bash scripts/setup.sh && bash scripts/demo.sh (no ../shared)"
t=$(date +%s)
in_root "bash scripts/setup.sh && bash scripts/demo.sh" || { echo "fresh_check: FAILED: setup + demo" >&2; exit 1; }
[[ "$(head -c 8 "$root/src/fluxcpp/out/demo.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] ||
  { echo "fresh_check: FAILED: the demo wrote no PNG" >&2; exit 1; }
say "step 1 passed in $(($(date +%s) - t)) s: out/demo.png $(wc -c <"$root/src/fluxcpp/out/demo.png") bytes"

say "step 2: bash scripts/serve_example.sh"
in_root "bash scripts/serve_example.sh" || { echo "fresh_check: FAILED: the README's server examples" >&2; exit 1; }

say "step 3: bash scripts/test.sh (../shared beside the clone, read-only)"
t=$(date +%s)
bind "$shared" "$root/src/shared" ro
set +e
in_root "bash scripts/test.sh" 2>&1 | tee "$test_log"
status=${PIPESTATUS[0]}
set -e
[[ $status == 0 ]] || { echo "fresh_check: FAILED: scripts/test.sh (exit $status)" >&2; exit 1; }
say "step 3 passed in $(($(date +%s) - t)) s: $(grep -o '[0-9]* tests passed.*' "$test_log" | tail -1)"

say "step 4: bash scripts/fuzz.sh 5 fuzz_safetensors"
t=$(date +%s)
in_root "bash scripts/fuzz.sh 5 fuzz_safetensors" || { echo "fresh_check: FAILED: the fuzz toolchain" >&2; exit 1; }
say "step 4 passed in $(($(date +%s) - t)) s"
say "all steps passed in a clean Debian 12 root"
