#!/usr/bin/env bash
# Persistence, shoal against redis-server in one run:
#
#   (a) restart time with KEYS keys (1 000 000) of 64-byte values: from a
#       snapshot (shoal: `shoal snapshot`, then kill -9; redis: SAVE, then
#       kill -9) and from the log alone (shoal: --persistence log, kill -9;
#       redis: appendonly yes without an RDB preamble or rewrite, kill -9),
#       timed from the start of the process until it serves: shoal until
#       `shoal-server healthcheck` says SERVING, redis until PING answers
#       PONG rather than LOADING. Each restart also checks that the last key
#       written is there. The in-process figure of the same restart
#       (recover + start_log, from the persistence_restart example) is shown
#       beside it.
#   (b) write throughput with the log under fsync everysec and always, each
#       as a ratio to the same server with persistence off: unary SETs
#       (`shoal bench -t set`, `redis-benchmark -t set`) and batched ones
#       (`shoal bench -t mset -P 16`, `redis-benchmark -t set -P 16`).
#
# Each figure is the median of RUNS runs, shoal and redis taking turns: on a
# shared machine the ratios taken side by side are what to read.
#
#   bash server/bench/benches/persistence.sh     (needs redis-server, redis-cli, redis-benchmark)
#
# Settings (environment): RUNS (3), KEYS (1000000), CLIENTS (50), REQUESTS
# (unary writes per run, 200000), BATCHES (batches of 16 per run, 50000),
# PARTS (what to measure, comma-separated: shoal for the server, inprocess
# for the persistence_restart example, redis; all three by default; a
# figure whose peer is left out is printed without its ratio).
set -euo pipefail
cd "$(dirname "$0")/../../.."

parts=${PARTS:-shoal,inprocess,redis}
for part in ${parts//,/ }; do
  case $part in
    shoal | inprocess | redis) ;;
    *)
      echo "persistence.sh: PARTS names shoal, inprocess and redis, not '$part'" >&2
      exit 2
      ;;
  esac
done
want() { [[ ",$parts," == *",$1,"* ]]; }
if want redis; then
  for tool in redis-server redis-cli redis-benchmark; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "persistence.sh: $tool not found; install it (apt-get install redis-server redis-tools)" >&2
      exit 1
    fi
  done
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "persistence.sh: python3 not found; it picks free ports, times restarts and reads the results" >&2
  exit 1
fi

runs=${RUNS:-3}
keys=${KEYS:-1000000}
clients=${CLIENTS:-50}
requests=${REQUESTS:-200000}
batches=${BATCHES:-50000}

echo "== building release binaries" >&2
cargo build --quiet --release -p shoal-server -p shoal-cli --bins
cargo build --quiet --release -p shoal-bench --example persistence_restart
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
now() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "import sys, time; print(round(time.monotonic() - float(sys.argv[1]), 3))" "$1"; }

# Every process started here is killed with -9, as a crash would, and
# forgotten.
kill9() {
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

results="$work/results"
: >"$results"
record() {
  echo "$1 $2 $3" >>"$results"
  echo "  $1 $2: $3" >&2
}

# --- shoal -----------------------------------------------------------------

shoal_port=$(free_port)
shoal_pid=
start_seconds=
# shoal_start DATA_DIR FLAGS...: starts shoal-server, waits until it is
# SERVING; sets start_seconds to the seconds that took. (Not run in a
# subshell, so that the server's pid is kept for the cleanup.)
shoal_start() {
  local dir=$1 started
  shift
  started=$(now)
  "$bin/shoal-server" --listen "127.0.0.1:$shoal_port" --admin-listen off --data-dir "$dir" "$@" \
    >>"$work/shoal-server.log" 2>&1 &
  shoal_pid=$!
  pids+=("$shoal_pid")
  for _ in $(seq 1 6000); do
    if "$bin/shoal-server" healthcheck --addr "127.0.0.1:$shoal_port" --timeout-ms 200 >/dev/null 2>&1; then
      start_seconds=$(elapsed "$started")
      return 0
    fi
    if ! kill -0 "$shoal_pid" 2>/dev/null; then break; fi
    sleep 0.01
  done
  echo "shoal-server did not become SERVING" >&2
  tail -20 "$work/shoal-server.log" >&2
  exit 1
}
shoal_cli() { "$bin/shoal" --addr "127.0.0.1:$shoal_port" --timeout 60000 "$@"; }
last_key=$(printf 'key:%012d' $((keys - 1)))
# Writes the whole key space (key:000000000000 .. KEYS-1) with 64-byte
# values: shoal bench's preload before its get test.
shoal_load() {
  shoal_cli bench --quiet -t get -d 64 -r "$keys" -n 1 -c 1 >/dev/null
}
shoal_check() {
  if [[ -z "$(shoal_cli get "$last_key")" || "$(shoal_cli get "$last_key")" == "(nil)" ]]; then
    echo "shoal-server lost $last_key across the restart" >&2
    exit 1
  fi
}
# shoal_restart MODE: loads the keys into a fresh data directory, makes them
# durable the way MODE says, kills the server with -9, and records how long
# the next start takes.
shoal_restart() {
  local mode=$1 dir="$work/shoal-$1" seconds
  rm -rf "$dir"
  mkdir -p "$dir"
  if [[ $mode == snapshot ]]; then
    shoal_start "$dir" --persistence snapshot
    shoal_load
    shoal_cli snapshot >/dev/null
  else
    shoal_start "$dir" --persistence log --fsync everysec
    shoal_load
  fi
  kill9 "$shoal_pid"
  if [[ $mode == snapshot ]]; then
    shoal_start "$dir" --persistence snapshot
  else
    shoal_start "$dir" --persistence log --fsync everysec
  fi
  seconds=$start_seconds
  shoal_check
  kill9 "$shoal_pid"
  record "restart-$mode" shoal "$seconds"
}
# shoal_writes MODE FLAGS...: unary and batched write throughput.
shoal_writes() {
  local mode=$1 dir="$work/shoal-writes" figure
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  shoal_start "$dir" "$@"
  figure=$(shoal_cli --json bench --quiet -t set -d 64 -r 100000 -c "$clients" -n "$requests" --warmup 1s |
    python3 -c 'import json, sys; print(round(json.loads(sys.stdin.readline())["items_per_sec"]))')
  record "unary-$mode" shoal "$figure"
  figure=$(shoal_cli --json bench --quiet -t mset -P 16 -d 64 -r 100000 -c "$clients" -n "$batches" --warmup 1s |
    python3 -c 'import json, sys; print(round(json.loads(sys.stdin.readline())["items_per_sec"]))')
  record "batch-$mode" shoal "$figure"
  kill9 "$shoal_pid"
}

# --- redis -----------------------------------------------------------------

redis_port=$(free_port)
redis_pid=
# redis_start DIR FLAGS...: starts redis-server in DIR, waits until PING
# answers PONG (not LOADING); sets start_seconds to the seconds that took.
redis_start() {
  local dir=$1 started
  shift
  started=$(now)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --daemonize no "$@" \
    >>"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 1 6000); do
    if [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" == PONG ]]; then
      start_seconds=$(elapsed "$started")
      return 0
    fi
    if ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
    sleep 0.01
  done
  echo "redis-server did not answer PING" >&2
  tail -20 "$work/redis.log" >&2
  exit 1
}
# The same key space as shoal's, written through redis-cli --pipe.
redis_load() {
  python3 - "$keys" <<'EOF' | redis-cli -p "$redis_port" --pipe >/dev/null
import sys
keys = int(sys.argv[1])
value = "x" * 64
out = sys.stdout
for i in range(keys):
    key = "key:%012d" % i
    out.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n" % (len(key), key, value))
EOF
}
redis_check() {
  if [[ -z "$(redis-cli -p "$redis_port" get "$last_key")" ]]; then
    echo "redis-server lost $last_key across the restart" >&2
    exit 1
  fi
}
redis_rdb=(--save '' --appendonly no --dbfilename dump.rdb)
redis_aof=(--save '' --appendonly yes --appendfsync everysec --aof-use-rdb-preamble no
  --auto-aof-rewrite-percentage 0)
redis_restart() {
  local mode=$1 dir="$work/redis-$1" seconds
  rm -rf "$dir"
  mkdir -p "$dir"
  if [[ $mode == snapshot ]]; then
    redis_start "$dir" "${redis_rdb[@]}"
    redis_load
    redis-cli -p "$redis_port" save >/dev/null
  else
    redis_start "$dir" "${redis_aof[@]}"
    redis_load
    # everysec writes the AOF buffer on the next event-loop turn.
    redis-cli -p "$redis_port" ping >/dev/null
    sleep 1.5
  fi
  kill9 "$redis_pid"
  if [[ $mode == snapshot ]]; then
    redis_start "$dir" "${redis_rdb[@]}"
  else
    redis_start "$dir" "${redis_aof[@]}"
  fi
  seconds=$start_seconds
  redis_check
  kill9 "$redis_pid"
  record "restart-$mode" redis "$seconds"
}
redis_set() {
  redis-benchmark -p "$redis_port" -q --csv -t set -d 64 -r 100000 -c "$clients" "$@" |
    python3 -c 'import csv, sys; rows = list(csv.reader(sys.stdin)); print(round(float(next(r for r in rows if r[0] == "SET")[1])))'
}
redis_writes() {
  local mode=$1 dir="$work/redis-writes"
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  redis_start "$dir" --save '' "$@"
  record "unary-$mode" redis "$(redis_set -n "$requests")"
  record "batch-$mode" redis "$(redis_set -P 16 -n $((batches * 16)))"
  kill9 "$redis_pid"
}

# --- the runs --------------------------------------------------------------

echo "== $keys keys of 64-byte values; shoal-server on $shoal_port, redis-server on $redis_port" >&2
for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs: restarts" >&2
  for mode in snapshot log; do
    if want shoal; then shoal_restart "$mode"; fi
    if want redis; then redis_restart "$mode"; fi
  done
  if want inprocess; then
    for mode in snapshot log; do
      dir="$work/inproc-$mode"
      rm -rf "$dir"
      "$bin/examples/persistence_restart" prepare "$dir" "$mode" "$keys" >/dev/null
      record "inproc-$mode" shoal \
        "$("$bin/examples/persistence_restart" restart "$dir" 1 | sed -E 's/.* in ([0-9.]+) s/\1/')"
      rm -rf "$dir"
    done
  fi
  echo "== run $run of $runs: writes" >&2
  if want shoal; then
    shoal_writes off --persistence off
    shoal_writes everysec --persistence log --fsync everysec
    shoal_writes always --persistence log --fsync always
  fi
  if want redis; then
    redis_writes off --appendonly no
    redis_writes everysec --appendonly yes --appendfsync everysec
    redis_writes always --appendonly yes --appendfsync always
  fi
done

python3 - "$results" "$runs" "$keys" "$clients" <<'EOF'
import statistics, sys
path, runs, keys, clients = sys.argv[1:]
figures = {}
for line in open(path):
    name, who, value = line.split()
    figures.setdefault((name, who), []).append(float(value))
median = {key: statistics.median(values) for key, values in figures.items()}
get = lambda name, who: median.get((name, who))

def cell(x, fmt):
    return "-" if x is None else fmt(x)

print(f"medians of {runs} runs; {int(keys):,} keys of 64-byte values; -c {clients}".replace(",", " "))
print()
print("| restart | shoal (s) | shoal in process (s) | redis-server (s) | shoal / redis | goal |")
print("|---|---|---|---|---|---|")
for mode, label, goal in [("snapshot", "from a snapshot (redis: RDB)", 0.7),
                          ("log", "from the log alone (redis: AOF)", 1.1)]:
    shoal, inproc, redis = get(f"restart-{mode}", "shoal"), get(f"inproc-{mode}", "shoal"), get(f"restart-{mode}", "redis")
    ratio = shoal / redis if shoal and redis else None
    if shoal is not None and redis is not None:
        verdict = "met" if shoal <= goal and shoal < redis else "not met"
    elif shoal is not None:
        verdict = "met" if shoal <= goal else "not met"
    else:
        verdict = "-"
    print(f"| {label} | {cell(shoal, lambda x: f'{x:.3f}')} | {cell(inproc, lambda x: f'{x:.3f}')} "
          f"| {cell(redis, lambda x: f'{x:.3f}')} | {cell(ratio, lambda x: f'{x:.2f}x')} "
          f"| <= {goal} s and below redis, {verdict} |")
print()
print("| writes (ratio to persistence off) | shoal | redis-server | goal |")
print("|---|---|---|---|")
for kind, label in [("unary", "unary SET"), ("batch", "batches of 16 SETs")]:
    for fsync, goals in [("everysec", {"unary": 0.95, "batch": 0.80}), ("always", {"unary": 0.75, "batch": 0.75})]:
        cells = []
        ratios = {}
        for who in ("shoal", "redis"):
            off, on = get(f"{kind}-off", who), get(f"{kind}-{fsync}", who)
            if off and on:
                ratios[who] = on / off
                cells.append(f"{on / off:.2f}x ({on:,.0f} / {off:,.0f}/s)".replace(",", " "))
            else:
                cells.append("-")
        goal = goals[kind]
        verdict = "-" if "shoal" not in ratios else ("met" if ratios["shoal"] >= goal else "not met")
        print(f"| {label}, fsync {fsync} | {cells[0]} | {cells[1]} | >= {goal:.2f}x, {verdict} |")
print()
print("every run:")
for (name, who), values in sorted(figures.items()):
    print(f"  {name:17} {who:6} " + "  ".join(f"{v:g}" for v in values))
EOF
