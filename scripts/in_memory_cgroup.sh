#!/usr/bin/env bash
# Runs a command inside a fresh memory cgroup limited to LIMIT bytes (swap included where the kernel accounts
# it), then reports the group's peak usage and whether the kernel OOM-killed anything in it, and removes it.
# Works with cgroup v2 (memory.max) and v1 (memory.limit_in_bytes), as root; uses `systemd-run --scope -p
# MemoryMax=` semantics without needing systemd. The command's exit status is returned.
#
# Usage: scripts/in_memory_cgroup.sh [-q] LIMIT CMD [ARGS...]     LIMIT: bytes or 8G, 512M (binary units)
#   -q  drop the page cache first (a cold start: the group's file pages are read again, and charged to it)
set -euo pipefail

drop=0
if [ "${1:-}" = "-q" ]; then drop=1; shift; fi
[ $# -ge 2 ] || { sed -n '2,8p' "$0"; exit 2; }
limit=$1; shift
case $limit in
  *[Gg]) bytes=$(( ${limit%[Gg]} * 1024 * 1024 * 1024 )) ;;
  *[Mm]) bytes=$(( ${limit%[Mm]} * 1024 * 1024 )) ;;
  *[0-9]) bytes=$limit ;;
  *) echo "in_memory_cgroup: LIMIT must be bytes or N[MG], got '$limit'" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "in_memory_cgroup: needs root to make a cgroup" >&2; exit 2; }

name=fluxcpp-$$
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # v2
  dir=/sys/fs/cgroup/$name
  mkdir "$dir"
  echo "$bytes" > "$dir/memory.max"
  [ -f "$dir/memory.swap.max" ] && echo 0 > "$dir/memory.swap.max"
  peak_file=$dir/memory.peak
  events() { awk '$1 == "oom_kill" {print $2}' "$dir/memory.events"; }
elif [ -d /sys/fs/cgroup/memory ]; then  # v1
  dir=/sys/fs/cgroup/memory/$name
  mkdir "$dir"
  echo "$bytes" > "$dir/memory.limit_in_bytes"
  [ -f "$dir/memory.memsw.limit_in_bytes" ] && echo "$bytes" > "$dir/memory.memsw.limit_in_bytes" 2>/dev/null || true
  peak_file=$dir/memory.max_usage_in_bytes
  events() { awk '$1 == "oom_kill" {print $2}' "$dir/memory.oom_control"; }
else
  echo "in_memory_cgroup: no cgroup memory controller under /sys/fs/cgroup" >&2; exit 2
fi
cleanup() { rmdir "$dir" 2>/dev/null || true; }
trap cleanup EXIT

if [ $drop = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
echo "cgroup: $dir, limit $((bytes >> 20)) MiB" >&2
status=0
# The child joins the group before exec, so everything it starts is charged there.
bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' _ "$dir" "$@" || status=$?
peak=$(cat "$peak_file" 2>/dev/null || echo 0)
echo "cgroup: exit status $status, peak usage $((peak >> 20)) MiB (page cache included), oom_kill $(events)" >&2
exit $status
