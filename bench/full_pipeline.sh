#!/usr/bin/env bash
# Full-size FLUX.1-schnell end to end on this machine: `fluxcpp generate` 512x512, 4 steps, on random-weight
# sets with the real shapes and the real file layouts (make-test-model --size full --type T), one per type.
# Prints, per stage (loading each component, text encoding, each denoising step, VAE decode, PNG), the wall time
# and the stage's own peak RSS (generate --stats-json: VmHWM reset between stages; the largest is the run's peak),
# then the wall time and CPU share from /usr/bin/time -v (Debian package `time`) when present.
#
# Usage: bench/full_pipeline.sh [-b BUILD_DIR] [-r ROOT] [-t THREADS] [-d] [-m LIMIT [-c]] [-s SUFFIX]
#                                [TYPE...] [-- GENERATE_ARGS...]
#   -m LIMIT  runs generate inside a fresh memory cgroup of LIMIT (8G, ...: scripts/in_memory_cgroup.sh, root);
#             with -c the page cache is dropped first (a cold start). The default budget follows the cgroup.
#   -s SUFFIX names the results ROOT/TYPE.SUFFIX.* (several runs of one set).
#   TYPE: bf16 fp8 q8_0 q4_K (default: q4_K fp8). Sets live in ROOT/TYPE (default ROOT /var/tmp/fluxcpp-full)
#   and are made when missing; -d deletes each set after its run (disk: q4_K 9.6 GB, q8_0 ~17 GB, fp8 17 GB,
#   bf16 33 GB). Results: ROOT/TYPE.stats.json, ROOT/TYPE.log, ROOT/TYPE.png.
# The sets' files are usually still in the page cache right after make-test-model: the load stage then shows
# a warm read. Never run this in the repository's tree (the sets are tens of GB).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
root=/var/tmp/fluxcpp-full
threads=0
delete=0
limit=""
cold=0
suffix=""
extra=()
while getopts "b:r:t:dm:cs:" opt; do
  case $opt in
    m) limit=$OPTARG ;;
    c) cold=1 ;;
    s) suffix=.$OPTARG ;;
    b) build=$OPTARG ;;
    r) root=$OPTARG ;;
    t) threads=$OPTARG ;;
    d) delete=1 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
types=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
  types+=("$1"); shift
done
[ ${#types[@]} -gt 0 ] || types=(q4_K fp8)
fluxcpp="$build/src/cli/fluxcpp"
[ -x "$fluxcpp" ] || { echo "no $fluxcpp: build it first (ninja -C $build fluxcpp)" >&2; exit 1; }
# The real tokenizer files when ../shared is beside the tree, else make-test-model's own test tokenizers.
tok_args=()
[ -d "$here/../shared/tokenizers" ] && tok_args=(--tokenizers "$here/../shared/tokenizers")
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -v)
mkdir -p "$root"

table() {  # the stats JSON as a table
  python3 - "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"model: {s['model']}")
print(f"{'stage':<32} {'time (s)':>9} {'peak RSS (MiB)':>15} {'anon (MiB)':>11} {'file (MiB)':>11}")
for st in s["stages"]:
    print(f"{st['stage']:<32} {st['seconds']:>9.2f} {st['peak_rss_mib']:>15.0f} {st['rss_anon_mib']:>11.0f} "
          f"{st['rss_file_mib']:>11.0f}")
print(f"{'total':<32} {s['total_seconds']:>9.2f} {s['peak_rss_mib']:>15.0f}")
if "clip_seconds" in s:
    print(f"encode_text: CLIP {s['clip_seconds']:.2f} s, T5 {s['t5_seconds']:.2f} s (each incl. re-binding when dropped)")
EOF
}

echo "cpu: $(lscpu | grep 'Model name' | sed 's/Model name:[ ]*//'), $(nproc) threads; $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
for type in "${types[@]}"; do
  set_dir="$root/$type"
  if [ ! -f "$set_dir/.complete" ]; then
    echo "== making the $type set in $set_dir"
    rm -rf "$set_dir"
    "$fluxcpp" make-test-model "$set_dir" --size full --type "$type" "${tok_args[@]}"
    touch "$set_dir/.complete"
  fi
  echo "== $type: $(du -sh --apparent-size "$set_dir" | cut -f1) in $set_dir"
  echo "uptime: $(uptime)"
  out="$root/$type$suffix"
  cmd=("$fluxcpp" generate --model "$set_dir" -p "a photo of a red fox in the snow" -W 512 -H 512 --steps 4
    --seed 1 -t "$threads" -o "$out.png" --stats-json "$out.stats.json" "${extra[@]}")
  if [ -n "$limit" ]; then
    cg=(bash "$here/scripts/in_memory_cgroup.sh")
    [ $cold -eq 1 ] && cg+=(-q)
    cmd=("${cg[@]}" "$limit" "${cmd[@]}")
  fi
  echo "command: $(printf '%q ' "${timer[@]}" "${cmd[@]}")"
  if ! "${timer[@]}" "${cmd[@]}" >"$out.log" 2>&1; then
    echo "FAILED ($type), from $out.log:"
    grep -E "error|signal|Maximum resident|Elapsed \(wall|^cgroup" "$out.log" || tail -5 "$out.log"
    continue
  fi
  table "$out.stats.json"
  # ru_maxrss (time -v "Maximum resident set size") is reset with VmHWM by --stats-json: the table's total
  # line (the largest stage peak) is the run's peak; time -v adds the wall time and CPU share.
  grep -E "Elapsed \(wall|Percent of CPU" "$out.log" | sed 's/^\s*/time -v: /' || true
  grep -E "weights:|memory: plan|^cgroup" "$out.log" | head -4 || true
  if [ $delete -eq 1 ]; then rm -rf "$set_dir"; fi
done
