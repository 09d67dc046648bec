#!/usr/bin/env bash
# Mass expiry, shoal against redis-server in one run: one million keys
# (12-byte keys, 32-byte values) with a one-second TTL, then the time until
# every key has been reclaimed and the memory figures before and after.
#
#   bash server/bench/benches/mass_expiry.sh        (needs redis-server and redis-cli)
set -euo pipefail
cd "$(dirname "$0")/../../.."

echo "== shoal engine (in process, real clock, sweeper every 100 ms)"
cargo run --quiet --release -p shoal-bench --example expiry_reclaim

echo
echo "== redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') (default active expiry, hz 10)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
redis=$!
trap 'kill "$redis" 2>/dev/null || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
used() { redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {printf "%.1f MiB", $2/1048576}'; }
echo "empty: used_memory $(used)"
start=$(date +%s%N)
python3 -c '
import sys
value = "0123456789abcdef0123456789abcdef"
out = sys.stdout
for i in range(1_000_000):
    key = "key:%08d" % i
    out.write("*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nPX\r\n$4\r\n1000\r\n" % (len(key), key, len(value), value))
' | redis-cli -p "$port" --pipe >/dev/null
loaded=$(date +%s%N)
echo "loaded 1000000 keys in $(( (loaded - start) / 1000000 )) ms; used_memory $(used)"
while [ "$(redis-cli -p "$port" dbsize)" != "0" ]; do sleep 0.01; done
gone=$(date +%s%N)
echo "last key reclaimed $(( (gone - loaded) / 1000000 - 1000 )) ms after the last deadline; used_memory after $(used)"
