#!/usr/bin/env bash
# Network throughput, shoal against its peers in one run: shoal-server,
# shoal-bare (tonic alone answering Get with a fixed value: no layers, no
# metrics, no tracing, tonic's own codec and settings) and shoal-noop (shoal's
# API and stack with no cache behind it) driven by `shoal bench`, and
# redis-server driven by redis-benchmark, with the same workloads (64-byte
# values, 50 requests in flight, 100 000 keys, all preloaded so every read
# hits):
#
#   - unary GET: shoal-server against shoal-bare (what shoal's whole stack
#     costs on top of the library it is built on) and shoal-noop (what the
#     cache's work costs on top of shoal's stack), in requests per second and
#     in server CPU per call (from /proc, over a run on 1 000 keys so that
#     the preload is negligible);
#   - batched GET of 16 and of 100 keys: the client's get_many (one command
#     per batch on a Pipeline stream kept open per connection) against
#     redis-benchmark's pipelined GET at the same depth, in keys per second;
#     and, for comparison, get_many sending each batch as a GetBatch call;
#   - batched GET of 100 2 KiB values, in values per second.
#
# Each measurement runs RUNS times, shoal and its peer taking turns, and the
# table shows the medians: on a shared machine the ratio of figures taken
# side by side is what to read, not the figures themselves.
#
#   bash server/bench/benches/compare.sh     (needs redis-server and redis-benchmark)
#
# Settings (environment): RUNS (5), KEYS (100000), CLIENTS (50),
# UNARY_REQUESTS (200000), BATCH_KEYS (keys read per batched run, 2000000),
# CONNECTIONS (HTTP/2 connections of shoal bench, 2), THREADS (threads of
# each load generator, 2: with one, shoal bench leaves part of the machine
# idle on the 2 KiB reads while neither it nor the server is busy;
# redis-benchmark gets as many, which leaves redis's figures as they are,
# its server being single-threaded).
set -euo pipefail
cd "$(dirname "$0")/../../.."

for tool in redis-server redis-cli redis-benchmark; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "compare.sh: $tool not found; install it (apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
done
if ! command -v python3 >/dev/null 2>&1; then
  echo "compare.sh: python3 not found; it picks free ports and reads the results" >&2
  exit 1
fi

runs=${RUNS:-5}
keys=${KEYS:-100000}
clients=${CLIENTS:-50}
unary_requests=${UNARY_REQUESTS:-200000}
batch_keys=${BATCH_KEYS:-2000000}
connections=${CONNECTIONS:-2}
threads=${THREADS:-2}

echo "== building release binaries" >&2
cargo build --quiet --release -p shoal-server -p shoal-cli -p shoal-bench --bins
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
shoal_port=$(free_port)
noop_port=$(free_port)
bare_port=$(free_port)
redis_port=$(free_port)

"$bin/shoal-server" --listen "127.0.0.1:$shoal_port" --admin-listen off >"$work/shoal-server.log" 2>&1 &
shoal_pid=$!
pids+=($!)
"$bin/shoal-noop" --listen "127.0.0.1:$noop_port" --value-size 64 >"$work/shoal-noop.log" 2>&1 &
pids+=($!)
"$bin/shoal-bare" --listen "127.0.0.1:$bare_port" --value-size 64 >"$work/shoal-bare.log" 2>&1 &
bare_pid=$!
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$work/redis.log" >&2; exit 1; }
# The gRPC servers: wait until each accepts connections, or show its log.
for server in "shoal-server:$shoal_port" "shoal-noop:$noop_port" "shoal-bare:$bare_port"; do
  name=${server%%:*}
  port=${server##*:}
  if ! python3 - "$port" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
  then
    echo "$name did not start" >&2
    cat "$work/$name.log" >&2
    exit 1
  fi
done

# Writes key:000000000000 .. key:<KEYS-1> into redis, as redis-benchmark
# names its keys (and shoal bench preloads its own), with values of $1 bytes.
redis_preload() {
  python3 - "$keys" "$1" <<'EOF' | redis-cli -p "$redis_port" --pipe >/dev/null
import sys
keys, size = int(sys.argv[1]), int(sys.argv[2])
value = "x" * size
out = sys.stdout
for i in range(keys):
    key = "key:%012d" % i
    out.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF
}

# One line per measurement: "<name> <peer|shoal> <per second>".
results="$work/results"
: >"$results"

# shoal bench, one test; prints items per second (= requests per second for
# unary tests).
shoal_bench() {
  local port=$1
  shift
  "$bin/shoal" --addr "127.0.0.1:$port" --timeout 30000 --json bench --quiet \
    -c "$clients" -r "$keys" --connections "$connections" --threads "$threads" "$@" |
    python3 -c 'import json, sys; print(round(json.loads(sys.stdin.readline())["items_per_sec"]))'
}

# unary_cpu PORT PID: unary GETs over 1 000 keys; prints the server's CPU
# time (user + system, from /proc) per call, in microseconds.
unary_cpu() {
  local port=$1 pid=$2 before after
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  "$bin/shoal" --addr "127.0.0.1:$port" --timeout 30000 --json bench --quiet \
    -c "$clients" -r 1000 --connections "$connections" --threads "$threads" \
    -t get -d 64 -n "$unary_requests" >/dev/null
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  python3 -c "import sys; ticks, hz, calls = map(float, sys.argv[1:]); print(round(ticks / hz * 1e6 / calls, 2))" \
    "$((after - before))" "$(getconf CLK_TCK)" "$((unary_requests + 1000))"
}

# redis-benchmark GET; prints commands (= keys) per second.
redis_get() {
  redis-benchmark -p "$redis_port" -q --csv -t get -c "$clients" -r "$keys" --threads "$threads" "$@" |
    python3 -c 'import csv, sys; rows = list(csv.reader(sys.stdin)); print(round(float(next(r for r in rows if r[0] == "GET")[1])))'
}

# record NAME WHO COMMAND...: runs the command (which prints a figure) and
# keeps it; a failed run stops the script.
record() {
  local name=$1 who=$2 value
  shift 2
  value=$("$@")
  echo "$name $who $value" >>"$results"
  echo "  $name $who: $value" >&2
}

echo "== redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on $redis_port, shoal-server on $shoal_port, shoal-noop on $noop_port, shoal-bare on $bare_port" >&2
redis_preload 64
for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs" >&2
  record unary bare shoal_bench "$bare_port" -t get -d 64 -n "$unary_requests" --warmup 1s
  record unary noop shoal_bench "$noop_port" -t get -d 64 -n "$unary_requests" --warmup 1s
  record unary shoal shoal_bench "$shoal_port" -t get -d 64 -n "$unary_requests" --warmup 1s
  record cpu bare unary_cpu "$bare_port" "$bare_pid"
  record cpu shoal unary_cpu "$shoal_port" "$shoal_pid"
  for depth in 16 100; do
    record "batch$depth" redis redis_get -d 64 -P "$depth" -n "$batch_keys"
    record "batch$depth" shoal shoal_bench "$shoal_port" -t mget -d 64 -P "$depth" -n $((batch_keys / depth)) --warmup 1s
    record "call$depth" shoal shoal_bench "$shoal_port" -t mget --batch-calls -d 64 -P "$depth" -n $((batch_keys / depth / 2)) --warmup 1s
  done
done
redis_preload 2048
for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs, 2 KiB values" >&2
  record large redis redis_get -d 2048 -P 100 -n "$batch_keys"
  record large shoal shoal_bench "$shoal_port" -t mget -d 2048 -P 100 -n $((batch_keys / 100)) --warmup 1s
done

python3 - "$results" "$runs" "$clients" "$connections" "$threads" <<'EOF'
import statistics, sys
path, runs, clients, connections, threads = sys.argv[1:]
figures = {}
for line in open(path):
    name, who, value = line.split()
    figures.setdefault((name, who), []).append(float(value))
median = {key: statistics.median(values) for key, values in figures.items()}

def n(x):
    return f"{x:,.0f}".replace(",", " ")

rows = [
    ("GET, unary (requests/s)", "unary", "bare", "shoal-bare (tonic alone)", 0.9),
    ("... against shoal's stack with no cache", "unary", "noop", "shoal-noop", None),
    ("GET, batches of 16 keys (keys/s)", "batch16", "redis", "redis-benchmark -P 16", 1.0),
    ("GET, batches of 100 keys (keys/s)", "batch100", "redis", "redis-benchmark -P 100", 1.0),
]
print(f"medians of {runs} runs; -c {clients}, 64-byte values unless said; "
      f"shoal bench over {connections} connection(s), {threads} thread(s)")
print()
print("| workload | shoal | peer | peer figure | shoal / peer | goal |")
print("|---|---|---|---|---|---|")
for label, name, who, peer, goal in rows:
    shoal, other = median[(name, "shoal")], median[(name, who)]
    ratio = shoal / other
    if goal is None:
        print(f"| {label} | {n(shoal)} | {peer} | {n(other)} | {ratio:.2f}x | (for comparison) |")
        continue
    verdict = "met" if ratio >= goal else "not met"
    print(f"| {label} | {n(shoal)} | {peer} | {n(other)} | {ratio:.2f}x | >= {goal:.1f}x, {verdict} |")
    if name == "unary":
        shoal_cpu, bare_cpu = median[("cpu", "shoal")], median[("cpu", "bare")]
        ratio = bare_cpu / shoal_cpu
        verdict = "met" if ratio >= 0.9 else "not met"
        print(f"| server CPU per unary GET (µs; the ratio is peer ÷ shoal) | {shoal_cpu:.1f} "
              f"| shoal-bare (tonic alone) | {bare_cpu:.1f} | {ratio:.2f}x | >= 0.9x, {verdict} |")
    if name.startswith("batch"):
        depth = name[len("batch"):]
        calls = median[("call" + depth, "shoal")]
        print(f"| ... as a GetBatch call each (--batch-calls) | {n(calls)} | {peer} | {n(other)} "
              f"| {calls / other:.2f}x | (for comparison) |")
shoal, other = median[("large", "shoal")], median[("large", "redis")]
verdict = "met" if shoal >= 500_000 else "not met"
print(f"| GET, batches of 100 2 KiB values (values/s) | {n(shoal)} | redis-benchmark -P 100 -d 2048 "
      f"| {n(other)} | {shoal / other:.2f}x | >= 500 000 values/s, {verdict} |")
print()
print("every run (per second):")
for (name, who), values in sorted(figures.items()):
    print(f"  {name:9} {who:6} " + "  ".join(n(v) for v in values))
EOF
