#!/usr/bin/env bash
# Instructions per unary Get over loopback gRPC, shoal-server against
# shoal-bare (tonic alone answering Get with a fixed value) in one run.
# Each server runs under callgrind; after a warm-up its counters are zeroed,
# 20 000 Gets of one key are sent by `shoal bench` (50 in flight over two
# connections) and the counters are dumped. callgrind counts what the CPU
# is asked to do, so the figures repeat from run to run on a shared
# machine; time-driven work (timers, the expiry sweeper) weighs more than
# in real time, since everything runs about 50 times slower.
#
#   bash server/bench/benches/unary_instructions.sh      (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli -p shoal-bench --bins
bin=target/release
calls=20000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# measure NAME COMMAND...: instructions per call of the server COMMAND
# (PORT in it is replaced by a free port).
measure() {
  local name=$1 port pid
  shift
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.%p" "${@//PORT/$port}" \
    >"$out/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    "$bin/shoal" --addr "127.0.0.1:$port" --timeout 1000 bench -t get -n 100 -r 1 -q -c 4 \
      >/dev/null 2>&1 && break
    sleep 1
  done
  "$bin/shoal" --addr "127.0.0.1:$port" bench -t get -n 2000 -r 1 -q -c 50 --connections 2 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$bin/shoal" --addr "127.0.0.1:$port" bench -t get -n "$calls" -r 1 -q -c 50 \
    --connections 2 --threads 2 >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  callgrind_annotate "$out/$name.$pid.1" 2>/dev/null |
    awk -v name="$name" -v calls="$calls" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%-28s %10.0f\n", name, $1 / calls }'
}

printf '%-28s %10s\n' server "instr/call"
measure shoal-bare "$bin/shoal-bare" --listen 127.0.0.1:PORT
measure shoal-server "$bin/shoal-server" --listen 127.0.0.1:PORT --admin-listen off
printf '[grpc]\nkeepalive_interval_secs = 0\n' >"$out/no-keepalive.toml"
measure "shoal-server, no keepalive" "$bin/shoal-server" --listen 127.0.0.1:PORT --admin-listen off \
  --config "$out/no-keepalive.toml"
