#!/usr/bin/env bash
# What a hop through a member that does not own the key costs: the same
# `shoal bench` against a server directly, and through a cluster member
# that forwards almost every call to it, in one run.
#
# The owner is a plain server B. The forwarding member A is started with
# `--peers a=A,b01=B,...,b19=B`: nineteen ids at B's address own 19/20 of
# the keys, so A forwards 95% of its calls (one hop, marked as forwarded,
# which B serves as any call) and serves 5% itself. Both servers and the
# client share the machine's cores, so the forwarded figure pays for A's
# work as a caller would.
#
# Unary Gets and Sets, ROUNDS times each in alternation; prints each run,
# the medians and the ratio of forwarded to direct. Batches are left out:
# A would split each one among twenty owners that are one server, which no
# real cluster does.
#
#   bash server/bench/benches/cluster_forwarding.sh
#   ROUNDS=5 REQUESTS=200000 bash server/bench/benches/cluster_forwarding.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli
bin=target/release
rounds=${ROUNDS:-3}
requests=${REQUESTS:-100000}
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

owner="127.0.0.1:$(free_port)"
member="127.0.0.1:$(free_port)"
peers="a=$member"
for n in $(seq -w 1 19); do peers="$peers,b$n=$owner"; done

"$bin/shoal-server" --listen "$owner" --admin-listen off >"$out/owner.log" 2>&1 &
pids+=($!)
"$bin/shoal-server" --listen "$member" --admin-listen off --node-id a --peers "$peers" \
  >"$out/member.log" 2>&1 &
pids+=($!)
for addr in "$owner" "$member"; do
  for _ in $(seq 1 120); do
    "$bin/shoal-server" healthcheck --addr "$addr" >/dev/null 2>&1 && continue 2
    sleep 0.5
  done
  echo "the server at $addr never served" >&2
  exit 1
done

# bench ADDR WORKLOAD: requests per second.
bench() {
  local addr=$1 workload=$2
  local -a load
  case $workload in
    get) load=(-t get -n "$requests") ;;
    set) load=(-t set -n "$requests") ;;
  esac
  "$bin/shoal" --addr "$addr" --json bench "${load[@]}" -d 64 -c 50 -r 100000 \
    --connections 50 --threads 2 -q |
    python3 -c 'import json, sys
report = json.loads(sys.stdin.readline())
assert report["errors"] == 0, report
print(round(report["items_per_sec"]))'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() { printf '%-8s' "$1"; shift; printf ' %12s' "$@"; printf '\n'; }

for workload in get set; do
  printf '\n%s (requests per second)\n' "$workload"
  row round direct forwarded
  for round in $(seq 1 "$rounds"); do
    if ((round % 2)); then
      direct=$(bench "$owner" "$workload")
      forwarded=$(bench "$member" "$workload")
    else
      forwarded=$(bench "$member" "$workload")
      direct=$(bench "$owner" "$workload")
    fi
    echo "$direct" >>"$out/$workload.direct"
    echo "$forwarded" >>"$out/$workload.forwarded"
    row "$round" "$direct" "$forwarded"
  done
  d=$(median <"$out/$workload.direct")
  f=$(median <"$out/$workload.forwarded")
  row median "$d" "$f"
  row ratio 1.000 "$(python3 -c "print(f'{$f / $d:.3f}')")"
done
