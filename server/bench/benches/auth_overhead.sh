#!/usr/bin/env bash
# What token checks cost a unary Get: shoal-server with a token file
# against the same server without one, in one run.
#
# 1. Throughput: `shoal bench -t get` (64-byte values, 50 in flight, two
#    connections, two threads) against each server in turn, ROUNDS times,
#    alternating; prints each run and the medians.
# 2. With --callgrind (needs valgrind): instructions per Get of each server,
#    as unary_instructions.sh counts them, which repeat from run to run on a
#    shared machine where throughput varies by 10 to 20%.
#
#   bash server/bench/benches/auth_overhead.sh [--callgrind]
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli
bin=target/release
rounds=${ROUNDS:-5}
requests=${REQUESTS:-200000}
out=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A token that may write everywhere (the bench preloads its keys).
"$bin/shoal-server" token --id bench --grant '*=write' >"$out/token.out"
token=$(head -n 1 "$out/token.out")
grep -v '^#' "$out/token.out" | tail -n +2 >"$out/tokens.toml"

wait_serving() {
  for _ in $(seq 1 120); do
    "$bin/shoal" --addr "127.0.0.1:$1" --token "$token" --timeout 1000 bench -t get -n 100 -r 1 -q -c 4 \
      >/dev/null 2>&1 && return
    sleep 1
  done
  echo "server on $1 never served" >&2
  exit 1
}

# bench PORT [--token TOKEN]: the Gets per second of one run. The server
# without a token file gets no token, so the whole cost of turning auth on
# is measured: the header on the wire (marked sensitive, so HPACK sends it
# in full every time) and the check.
bench() {
  local port=$1
  shift
  "$bin/shoal" --addr "127.0.0.1:$port" "$@" --json bench -t get -d 64 -c 50 \
    -r 100000 -n "$requests" --connections 2 --threads 2 -q |
    python3 -c 'import json, sys
report = json.loads(sys.stdin.readline())
assert report["errors"] == 0, report
print(round(report["requests_per_sec"]))'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

plain=$(free_port)
"$bin/shoal-server" --listen "127.0.0.1:$plain" --admin-listen off >"$out/plain.log" 2>&1 &
pids+=($!)
secured=$(free_port)
"$bin/shoal-server" --listen "127.0.0.1:$secured" --admin-listen off \
  --token-file "$out/tokens.toml" >"$out/secured.log" 2>&1 &
pids+=($!)
wait_serving "$plain"
wait_serving "$secured"

printf '%-6s %12s %12s\n' round "no auth" "tokens"
for round in $(seq 1 "$rounds"); do
  a=$(bench "$plain")
  b=$(bench "$secured" --token "$token")
  echo "$a" >>"$out/plain.rps"
  echo "$b" >>"$out/secured.rps"
  printf '%-6s %12s %12s\n' "$round" "$a" "$b"
done
a=$(median <"$out/plain.rps")
b=$(median <"$out/secured.rps")
printf '%-6s %12s %12s   ratio %s\n' median "$a" "$b" "$(python3 -c "print(f'{$b / $a:.3f}')")"

for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
pids=()

[[ "${1:-}" == "--callgrind" ]] || exit 0

calls=20000
# instructions NAME TOKEN ARGS...: instructions per Get of shoal-server
# ARGS, called with TOKEN (none if empty).
instructions() {
  local name=$1 port pid
  local -a with=()
  [[ -n "$2" ]] && with=(--token "$2")
  shift 2
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.%p" \
    "$bin/shoal-server" --listen "127.0.0.1:$port" --admin-listen off "$@" >"$out/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_serving "$port"
  "$bin/shoal" --addr "127.0.0.1:$port" "${with[@]}" bench -t get -n 2000 -r 1 -q -c 50 \
    --connections 2 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$bin/shoal" --addr "127.0.0.1:$port" "${with[@]}" bench -t get -n "$calls" -r 1 -q -c 50 \
    --connections 2 --threads 2 >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  callgrind_annotate "$out/$name.$pid.1" 2>/dev/null |
    awk -v name="$name" -v calls="$calls" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%-10s %10.0f instructions per Get\n", name, $1 / calls }'
}
instructions "no auth" ""
instructions tokens "$token" --token-file "$out/tokens.toml"
