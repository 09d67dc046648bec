#!/usr/bin/env bash
# What a topology-aware client's routing costs: the typed client
# (`shoal bench --topology-aware`) against one server, and against a
# three-member cluster, where it sends each key straight to its owner and
# splits each batch by owner, in one run.
#
# All the servers and the client share this machine's cores, so the
# cluster cannot be faster than the single server here: three members do
# the single server's work between them. What the ratio shows is what the
# routing adds on the way (one more view lookup and hash per key, a batch
# split three ways and merged, more connections), which is also the
# routed rate per member against a single server's rate when each member
# has a machine of its own.
#
# Unary Gets and Sets, and batches of 16 keys (mget), ROUNDS times each in
# alternation; prints each run, the medians and the ratio of routed to
# single.
#
#   bash server/bench/benches/cluster_routing.sh
#   ROUNDS=5 REQUESTS=200000 bash server/bench/benches/cluster_routing.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli
bin=target/release
rounds=${ROUNDS:-3}
requests=${REQUESTS:-100000}
batches=${BATCHES:-20000}
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

single="127.0.0.1:$(free_port)"
members=()
peers=""
for id in a b c; do
  addr="127.0.0.1:$(free_port)"
  members+=("$id=$addr")
done
peers=$(IFS=,; echo "${members[*]}")

"$bin/shoal-server" --listen "$single" --admin-listen off >"$out/single.log" 2>&1 &
pids+=($!)
addrs=("$single")
for entry in "${members[@]}"; do
  id=${entry%%=*}
  addr=${entry#*=}
  "$bin/shoal-server" --listen "$addr" --admin-listen off --node-id "$id" --peers "$peers" \
    >"$out/$id.log" 2>&1 &
  pids+=($!)
  addrs+=("$addr")
done
for addr in "${addrs[@]}"; do
  for _ in $(seq 1 120); do
    "$bin/shoal-server" healthcheck --addr "$addr" >/dev/null 2>&1 && continue 2
    sleep 0.5
  done
  echo "the server at $addr never served" >&2
  exit 1
done
seed=${members[0]#*=}
# Until every member has seen the others ready, a member would forward
# keys of one it still thinks is down.
for _ in $(seq 1 120); do
  ready=$("$bin/shoal" --addr "$seed" --json cluster |
    python3 -c 'import json, sys; print(sum(m["ready"] for m in json.load(sys.stdin)["members"]))')
  [ "$ready" = 3 ] && break
  sleep 0.5
done

# bench ADDR WORKLOAD: keys per second.
bench() {
  local addr=$1 workload=$2
  local -a load
  case $workload in
    get) load=(-t get -n "$requests") ;;
    set) load=(-t set -n "$requests") ;;
    mget) load=(-t mget -n "$batches" -P 16) ;;
  esac
  "$bin/shoal" --addr "$addr" --json bench "${load[@]}" --topology-aware -d 64 -c 50 \
    -r 100000 --connections 16 --threads 2 -q |
    python3 -c 'import json, sys
report = json.loads(sys.stdin.readline())
assert report["errors"] == 0, report
print(round(report["items_per_sec"]))'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() { printf '%-8s' "$1"; shift; printf ' %12s' "$@"; printf '\n'; }

for workload in get set mget; do
  printf '\n%s (keys per second)\n' "$workload"
  row round single routed
  for round in $(seq 1 "$rounds"); do
    if ((round % 2)); then
      one=$(bench "$single" "$workload")
      routed=$(bench "$seed" "$workload")
    else
      routed=$(bench "$seed" "$workload")
      one=$(bench "$single" "$workload")
    fi
    echo "$one" >>"$out/$workload.single"
    echo "$routed" >>"$out/$workload.routed"
    row "$round" "$one" "$routed"
  done
  s=$(median <"$out/$workload.single")
  r=$(median <"$out/$workload.routed")
  row median "$s" "$r"
  row ratio 1.000 "$(python3 -c "print(f'{$r / $s:.3f}')")"
done
