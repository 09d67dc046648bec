#!/usr/bin/env bash
# Instructions per unary Get over loopback gRPC, shoal-server against
# shoal-bare (tonic alone answering Get with a fixed value) in one run.
# Each server runs under callgrind; after a warm-up its counters are zeroed,
# 20 000 Gets of one key are sent by `shoal bench` (50 in flight over two
# connections) and the counters are dumped. callgrind counts what the CPU
# is asked to do, so the figures repeat from run to run on a shared
# machine (within a few hundred instructions: time-driven work, timers and
# the expiry sweeper, weighs more than in real time, since everything runs
# about 50 times slower, and more still when the machine is busy). The
# sweeper's tick is stretched by the same factor, to 5 s, so that it
# weighs on a call about as it does at full speed.
#
#   bash server/bench/benches/unary_instructions.sh      (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli -p shoal-bench --bins
bin=target/release
calls=20000
# SHOAL_CALLGRIND_OUT=DIR keeps the profiles (for callgrind_annotate) there.
if [ -n "${SHOAL_CALLGRIND_OUT:-}" ]; then
  out=$SHOAL_CALLGRIND_OUT
  mkdir -p "$out"
else
  out=$(mktemp -d "${TMPDIR:-/tmp}/shoal-unary.XXXXXX")
  trap 'rm -rf "$out"' EXIT
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# measure NAME COMMAND...: instructions per call of the server COMMAND
# (PORT in it is replaced by a free port).
measure() {
  local name=$1 port pid
  shift
  port=$(free_port)
  local file=${name//[ ,\/]/_}
  valgrind --tool=callgrind --callgrind-out-file="$out/$file.%p" "${@//PORT/$port}" \
    >"$out/$file.log" 2>&1 &
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
  callgrind_annotate "$out/$file.$pid.1" 2>/dev/null |
    awk -v name="$name" -v calls="$calls" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%-28s %10.0f\n", name, $1 / calls }'
}

printf '%-28s %10s\n' server "instr/call"
measure shoal-bare "$bin/shoal-bare" --listen 127.0.0.1:PORT
printf '[expiry]\nsweep_interval_ms = 5000\n' >"$out/default.toml"
measure shoal-server "$bin/shoal-server" --listen 127.0.0.1:PORT --admin-listen off \
  --config "$out/default.toml"
printf '[expiry]\nsweep_interval_ms = 5000\n[grpc]\nhttp2_ping_interval_secs = 30\n' >"$out/pings.toml"
measure "shoal-server, HTTP/2 pings" "$bin/shoal-server" --listen 127.0.0.1:PORT --admin-listen off \
  --config "$out/pings.toml"
