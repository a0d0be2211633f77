#!/usr/bin/env bash
# Cluster roles on this machine with the tiny test model: jobs/minute of one `serve --role all` process and of an
# API node with 1 and 2 workers (Redis on loopback), and the added latency of the Redis hop: p50/p99 of
# submit -> started (GET /v1/jobs/{id} timings.queued) of jobs submitted one at a time to an idle server.
# Needs redis-server, curl and jq (scripts/setup.sh).
#
# Usage: bench/cluster_throughput.sh [-b BUILD_DIR] [-n JOBS] [-s STEPS] [-l LATENCY_JOBS]
#   JOBS (default 20) jobs of STEPS (default 200) steps, 64x64, submitted at once; LATENCY_JOBS (default 40) of
#   2 steps one after the other. Workers run their compute on 1 thread each (a worker per core); the single
#   process is measured with 1 and with 2 threads.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
jobs=20
steps=200
latency_jobs=40
while getopts "b:n:s:l:" opt; do
  case $opt in
    b) build=$OPTARG ;;
    n) jobs=$OPTARG ;;
    s) steps=$OPTARG ;;
    l) latency_jobs=$OPTARG ;;
    *) exit 2 ;;
  esac
done
flux="$build/src/cli/fluxcpp"
for tool in redis-server curl jq; do
  command -v "$tool" >/dev/null || { echo "cluster_throughput: $tool missing (scripts/setup.sh)" >&2; exit 1; }
done
[ -x "$flux" ] || { echo "cluster_throughput: $flux missing (build fluxcpp first, or -b BUILD_DIR)" >&2; exit 1; }

work=$(mktemp -d /tmp/fluxcpp-cluster-bench.XXXXXX)
cleanup() {  # serve runs in command substitutions (subshells): the pids are kept in a file
  [ -f "$work/pids" ] && while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
"$flux" make-test-model "$work/model" >"$work/make.log" 2>&1

# Starts `fluxcpp serve --threads THREADS ARGS` on a free port; prints the port once /health says ready.
serve() {
  local port log threads=$1
  shift
  port=$(free_port)
  log="$work/serve-$port.log"
  "$flux" serve --port "$port" --threads "$threads" --max-steps 1000 --queue-size 64 "$@" >/dev/null 2>"$log" &
  echo $! >>"$work/pids"
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/health" 2>/dev/null | jq -e '.status == "ready"' >/dev/null; then
      echo "$port"
      return
    fi
    sleep 0.1
  done
  echo "cluster_throughput: serve $* not ready (see $log)" >&2
  exit 1
}

submit() {  # PORT STEPS SEED -> id
  curl -sf -XPOST "http://127.0.0.1:$1/v1/jobs" \
    -d "{\"prompt\": \"bench $3\", \"size\": \"64x64\", \"steps\": $2, \"seed\": $3}" | jq -r .id
}
status() { curl -sf "http://127.0.0.1:$1/v1/jobs/$2" | jq -r .status; }

# Throughput: JOBS jobs at once; prints jobs/minute.
throughput() {
  local port=$1 ids=() t0 t1 id
  t0=$(date +%s.%N)
  for i in $(seq "$jobs"); do ids+=("$(submit "$port" "$steps" "$i")"); done
  for id in "${ids[@]}"; do
    until [ "$(status "$port" "$id")" = completed ]; do sleep 0.05; done
  done
  t1=$(date +%s.%N)
  echo "$jobs $t0 $t1" | awk '{printf "%.1f", $1 * 60 / ($3 - $2)}'
}

# Latency: one job at a time on the idle server; prints "p50 p99" of submit -> started in ms.
latency() {
  local port=$1 id
  : >"$work/latency"
  for i in $(seq "$latency_jobs"); do
    id=$(submit "$port" 2 "$((1000 + i))")
    until [ "$(status "$port" "$id")" = completed ]; do sleep 0.02; done
    curl -sf "http://127.0.0.1:$port/v1/jobs/$id" | jq -r '.timings.queued * 1000' >>"$work/latency"
  done
  sort -g "$work/latency" | awk '{v[NR] = $1} END {
    p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]; printf "%.1f %.1f", p50, p99 }'
}

single=$(serve 1 --model "$work/model")
printf "%-30s %8s jobs/min   submit->started p50/p99 %s ms\n" "single process, 1 thread" \
  "$(throughput "$single")" "$(latency "$single" | tr ' ' /)"
kill "$(tail -1 "$work/pids")"
single=$(serve 2 --model "$work/model")
printf "%-30s %8s jobs/min\n" "single process, 2 threads" "$(throughput "$single")"
kill "$(tail -1 "$work/pids")"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
echo $! >>"$work/pids"
sleep 0.3
queue="redis://127.0.0.1:$redis_port"
serve 1 --role worker --queue "$queue" --model "$work/model" --node-name w1 >/dev/null
api=$(serve 1 --role api --queue "$queue")
printf "%-30s %8s jobs/min   submit->started p50/p99 %s ms\n" "api + 1 worker (1 thread)" \
  "$(throughput "$api")" "$(latency "$api" | tr ' ' /)"
serve 1 --role worker --queue "$queue" --model "$work/model" --node-name w2 >/dev/null
printf "%-30s %8s jobs/min\n" "api + 2 workers (1 thread each)" "$(throughput "$api")"
