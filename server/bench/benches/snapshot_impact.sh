#!/usr/bin/env bash
# Reads while snapshots are taken, shoal against redis-server in one run.
#
# Each server is loaded with KEYS keys (1 000 000) of 64-byte values, then
# unary GETs of random keys are timed from CLIENTS clients (50) twice per
# run: quiet, and while snapshots are taken back to back (shoal: `shoal
# snapshot`, which reads shard by shard without fork; redis: BGSAVE, which
# forks). The figures are the p99 latency of each, their ratio, and the
# memory the snapshots took beyond the dataset: the peak of the server's
# resident set while they ran, less its resident set just before (redis:
# plus the peak of its forked child's private dirty pages, the pages
# copy-on-write duplicated), as a share of the dataset (the resident set
# after the load, less that of the empty server).
#
#   bash server/bench/benches/snapshot_impact.sh     (needs redis-server, redis-cli, redis-benchmark)
#
# Settings (environment): RUNS (3), KEYS (1000000), CLIENTS (50), REQUESTS
# (GETs per measurement, 200000), PARTS (shoal, redis or both, the default).
set -euo pipefail
cd "$(dirname "$0")/../../.."

parts=${PARTS:-shoal,redis}
want() { [[ ",$parts," == *",$1,"* ]]; }
for tool in python3 $(want redis && echo redis-server redis-cli redis-benchmark); do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "snapshot_impact.sh: $tool not found" >&2
    exit 1
  fi
done
runs=${RUNS:-3}
keys=${KEYS:-1000000}
clients=${CLIENTS:-50}
requests=${REQUESTS:-200000}

echo "== building release binaries" >&2
cargo build --quiet --release -p shoal-server -p shoal-cli --bins
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
results="$work/results"
: >"$results"
record() {
  echo "$1 $2 $3" >>"$results"
  echo "  $1 $2: $3" >&2
}

# sample PID OUT: until stopped, records the peak resident set of PID and
# the peak private dirty memory of its children (a fork's copied pages), in
# KiB, as "rss child" in OUT.
sample() {
  python3 - "$1" "$2" <<'EOF' &
import os, signal, sys, time
pid, out = int(sys.argv[1]), sys.argv[2]
peak_rss = peak_child = 0
stop = False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
def field(path, name):
    try:
        for line in open(path):
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
while not stop:
    peak_rss = max(peak_rss, field(f"/proc/{pid}/status", "VmRSS:"))
    child = 0
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for c in children:
        child += field(f"/proc/{c}/smaps_rollup", "Private_Dirty:")
    peak_child = max(peak_child, child)
    time.sleep(0.01)
open(out, "w").write(f"{peak_rss} {peak_child}\n")
EOF
  sampler=$!
}
stop_sampling() {
  kill -TERM "$sampler"
  wait "$sampler" || true
}

# --- shoal -----------------------------------------------------------------

shoal_port=$(free_port)
shoal_cli() { "$bin/shoal" --addr "127.0.0.1:$shoal_port" --timeout 60000 "$@"; }
shoal_get_p99() {
  shoal_cli --json bench --quiet -t get --no-preload -d 64 -r "$keys" -c "$clients" -n "$requests" --warmup 1s |
    python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["latency_ms"]["p99"])'
}
shoal_run() {
  local dir="$work/shoal" pid empty loaded before snapshots
  rm -rf "$dir"
  mkdir -p "$dir"
  "$bin/shoal-server" --listen "127.0.0.1:$shoal_port" --admin-listen off \
    --persistence snapshot --snapshot-interval 24h --data-dir "$dir" >>"$work/shoal-server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 3000); do
    "$bin/shoal-server" healthcheck --addr "127.0.0.1:$shoal_port" --timeout-ms 200 >/dev/null 2>&1 && break
    sleep 0.01
  done
  empty=$(rss_kib "$pid")
  # The get test's preload writes the whole key space.
  shoal_cli bench --quiet -t get -d 64 -r "$keys" -n 1 -c 1 >/dev/null
  loaded=$(rss_kib "$pid")
  record quiet-p99 shoal "$(shoal_get_p99)"
  before=$(rss_kib "$pid")
  (while true; do shoal_cli snapshot >/dev/null 2>&1 || true; done) &
  snapshots=$!
  sample "$pid" "$work/peak"
  record during-p99 shoal "$(shoal_get_p99)"
  stop_sampling
  kill "$snapshots" 2>/dev/null || true
  wait "$snapshots" 2>/dev/null || true
  read -r peak child <"$work/peak"
  record dataset-kib shoal $((loaded - empty))
  record extra-kib shoal $((peak - before + child))
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
}

# --- redis -----------------------------------------------------------------

redis_port=$(free_port)
redis_get_p99() {
  redis-benchmark -p "$redis_port" -q --csv -t get -d 64 -r "$keys" -c "$clients" -n "$requests" |
    python3 -c 'import csv, sys; rows = list(csv.reader(sys.stdin)); h = rows[0]; r = next(r for r in rows if r[0] == "GET"); print(r[h.index("p99_latency_ms")])'
}
redis_run() {
  local dir="$work/redis" pid empty loaded before snapshots
  rm -rf "$dir"
  mkdir -p "$dir"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize no >>"$work/redis.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 3000); do
    [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.01
  done
  empty=$(rss_kib "$pid")
  python3 - "$keys" <<'EOF' | redis-cli -p "$redis_port" --pipe >/dev/null
import sys
value = "x" * 64
for i in range(int(sys.argv[1])):
    key = "key:%012d" % i
    sys.stdout.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n" % (len(key), key, value))
EOF
  loaded=$(rss_kib "$pid")
  record quiet-p99 redis "$(redis_get_p99)"
  before=$(rss_kib "$pid")
  (while true; do
    redis-cli -p "$redis_port" bgsave >/dev/null 2>&1 || true
    while [[ "$(redis-cli -p "$redis_port" info persistence | tr -d '\r' | awk -F: '/^rdb_bgsave_in_progress/ { print $2 }')" == 1 ]]; do
      sleep 0.01
    done
  done) &
  snapshots=$!
  sample "$pid" "$work/peak"
  record during-p99 redis "$(redis_get_p99)"
  stop_sampling
  kill "$snapshots" 2>/dev/null || true
  wait "$snapshots" 2>/dev/null || true
  read -r peak child <"$work/peak"
  record dataset-kib redis $((loaded - empty))
  record extra-kib redis $((peak - before + child))
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
}

for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs" >&2
  if want shoal; then shoal_run; fi
  if want redis; then redis_run; fi
done

python3 - "$results" "$runs" "$keys" "$clients" <<'EOF'
import statistics, sys
path, runs, keys, clients = sys.argv[1:]
figures = {}
for line in open(path):
    name, who, value = line.split()
    figures.setdefault((name, who), []).append(float(value))
median = {key: statistics.median(values) for key, values in figures.items()}
print(f"medians of {runs} runs; {int(keys):,} keys of 64-byte values; GET from {clients} clients".replace(",", " "))
print()
print("| server | p99 quiet (ms) | p99 during snapshots (ms) | ratio | extra memory / dataset | goal |")
print("|---|---|---|---|---|---|")
for who, how in [("shoal", "shoal snapshot, no fork"), ("redis", "BGSAVE, fork")]:
    if (f"quiet-p99", who) not in median:
        continue
    quiet, during = median[("quiet-p99", who)], median[("during-p99", who)]
    share = median[("extra-kib", who)] / median[("dataset-kib", who)]
    goal = ""
    if who == "shoal":
        verdict = "met" if during <= 2 * quiet and share <= 0.10 else "not met"
        goal = f"p99 within 2x, extra <= 10%: {verdict}"
    print(f"| {who} ({how}) | {quiet:.3f} | {during:.3f} | {during / quiet:.2f}x | {share:.1%} | {goal} |")
print()
print("every run:")
for (name, who), values in sorted(figures.items()):
    print(f"  {name:12} {who:6} " + "  ".join(f"{v:g}" for v in values))
EOF
