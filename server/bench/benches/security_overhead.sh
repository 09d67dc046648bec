#!/usr/bin/env bash
# What securing shoal costs: shoal-servers side by side, plaintext, TLS
# (certificates from `shoal-server dev-cert`) and plaintext with a token
# file, in one run. The token file's server is called twice: with the token
# in `shoal-token` (the client's default, which HTTP/2 sends in full once
# per connection) and in `authorization: Bearer` (sent in full on every
# call), as the `tokens` and `bearer` columns.
#
# 1. Throughput: `shoal bench` (64-byte values, 50 in flight over 50 HTTP/2
#    connections, two threads, 100 000 preloaded keys) against each server
#    in turn, ROUNDS times, rotating the order; unary Gets and batches of 16
#    keys. Prints each run and the medians, and each median's ratio to the
#    plaintext one. The client runs on the same cores, so its own TLS and
#    header costs are in the figures too, as they would be for a caller.
# 2. The server's CPU time per unary Get and per key of a batch (user and
#    system ticks from /proc around each run, CPU_ROUNDS runs each): what
#    throughput would show on an idle machine, with far less noise.
# 3. With --callgrind (needs valgrind): instructions the server spends per
#    unary Get and per key of a 16-key batch (the median of CALLGRIND_RUNS
#    runs, 3 by default), which repeat from run to run on a shared machine where
#    throughput moves by 10 to 20%. valgrind does not run the CPU's SHA and
#    AES instructions natively; it emulates them, so the TLS row counts
#    more than the hardware executes.
#
#   bash server/bench/benches/security_overhead.sh [--callgrind]
#   ROUNDS=5 REQUESTS=200000 BATCHES=30000 bash server/bench/benches/security_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server -p shoal-cli
bin=target/release
rounds=${ROUNDS:-3}
# 50 HTTP/2 connections (CONNECTIONS), 50 calls in flight over them.
connections=${CONNECTIONS:-50}
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

"$bin/shoal-server" dev-cert --out "$out/certs" >/dev/null
# A token that may write everywhere (the bench preloads its keys).
"$bin/shoal-server" token --id bench --grant '*=write' >"$out/token.out"
token=$(head -n 1 "$out/token.out")
grep -v '^#' "$out/token.out" | tail -n +2 >"$out/tokens.toml"
# The sweeper's tick stretched, as unary_instructions.sh does, so that it
# weighs under valgrind as it does at full speed.
printf '[expiry]\nsweep_interval_ms = 5000\n' >"$out/server.toml"

# The client flags for each kind of server on PORT.
client_flags() {
  case $1 in
    plaintext) echo "--addr 127.0.0.1:$2" ;;
    tls) echo "--addr https://localhost:$2 --tls-ca $out/certs/ca.pem" ;;
    tokens) echo "--addr 127.0.0.1:$2 --token $token" ;;
    bearer) echo "--addr 127.0.0.1:$2 --token $token --token-header authorization" ;;
  esac
}
# The server flags for each kind.
server_flags() {
  case $1 in
    plaintext) echo "" ;;
    tls) echo "--tls-cert $out/certs/server.pem --tls-key $out/certs/server-key.pem" ;;
    tokens | bearer) echo "--token-file $out/tokens.toml" ;;
  esac
}

wait_serving() {
  local kind=$1 port=$2
  # shellcheck disable=SC2046
  for _ in $(seq 1 120); do
    "$bin/shoal" $(client_flags "$kind" "$port") --timeout 1000 bench -t get -n 100 -r 1 -q -c 4 \
      >/dev/null 2>&1 && return
    sleep 1
  done
  echo "the $kind server on $port never served" >&2
  exit 1
}

# bench KIND PORT WORKLOAD: requests (unary) or keys (batches) per second.
bench() {
  local kind=$1 port=$2 workload=$3
  local -a load
  case $workload in
    unary) load=(-t get -n "$requests") ;;
    batch) load=(-t mget -P 16 -n "$batches") ;;
  esac
  # shellcheck disable=SC2046
  "$bin/shoal" $(client_flags "$kind" "$port") --json bench "${load[@]}" -d 64 -c 50 \
    -r 100000 --connections "$connections" --threads 2 -q |
    python3 -c 'import json, sys
report = json.loads(sys.stdin.readline())
assert report["errors"] == 0, report
print(round(report["items_per_sec"]))'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

kinds=(plaintext tls tokens bearer)
# The servers: `bearer` calls the `tokens` one.
servers=(plaintext tls tokens)
declare -A ports
for kind in "${servers[@]}"; do
  ports[$kind]=$(free_port)
  # shellcheck disable=SC2046
  "$bin/shoal-server" --listen "127.0.0.1:${ports[$kind]}" --admin-listen off \
    --config "$out/server.toml" $(server_flags "$kind") >"$out/$kind.log" 2>&1 &
  pids+=($!)
done
ports[bearer]=${ports[tokens]}
for kind in "${servers[@]}"; do wait_serving "$kind" "${ports[$kind]}"; done

row() { printf '%-6s' "$1"; shift; printf ' %12s' "$@"; printf '\n'; }
for workload in unary batch; do
  printf '\n%s Gets (%s per second)\n' "$workload" "$([ "$workload" = unary ] && echo requests || echo keys)"
  row round "${kinds[@]}"
  for round in $(seq 1 "$rounds"); do
    # Rotate who goes first, so that a load that changes during a round
    # does not always fall on the same server.
    declare -A got=()
    for offset in $(seq 0 $((${#kinds[@]} - 1))); do
      kind=${kinds[$(((round + offset) % ${#kinds[@]}))]}
      got[$kind]=$(bench "$kind" "${ports[$kind]}" "$workload")
      echo "${got[$kind]}" >>"$out/$workload.$kind"
    done
    row "$round" "${got[plaintext]}" "${got[tls]}" "${got[tokens]}" "${got[bearer]}"
  done
  declare -A med=()
  for kind in "${kinds[@]}"; do med[$kind]=$(median <"$out/$workload.$kind"); done
  row median "${med[plaintext]}" "${med[tls]}" "${med[tokens]}" "${med[bearer]}"
  ratios=()
  for kind in "${kinds[@]}"; do
    ratios+=("$(python3 -c "print(f'{${med[$kind]} / ${med[plaintext]}:.3f}')")")
  done
  row ratio "${ratios[@]}"
done

# Server CPU time per item: user + system ticks of the server's process
# around a run (one key, so that the preload is one SetBatch), which a
# loaded machine disturbs far less than throughput.
declare -A server_pid
for index in "${!servers[@]}"; do server_pid[${servers[$index]}]=${pids[$index]}; done
server_pid[bearer]=${server_pid[tokens]}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cpu_runs=${CPU_ROUNDS:-3}
for workload in unary batch; do
  case $workload in
    unary) load=(-t get -n $((requests * 3))) items=$((requests * 3)) unit="µs per call" ;;
    batch) load=(-t mget -P 16 -n $((batches * 15))) items=$((batches * 15 * 16)) unit="µs per key" ;;
  esac
  printf '\nserver CPU, %s Gets (%s, median of %s)\n' "$workload" "$unit" "$cpu_runs"
  row kind "${kinds[@]}"
  declare -A cpu=()
  for kind in "${kinds[@]}"; do
    for _ in $(seq 1 "$cpu_runs"); do
      before=$(ticks "${server_pid[$kind]}")
      # shellcheck disable=SC2046
      "$bin/shoal" $(client_flags "$kind" "${ports[$kind]}") bench "${load[@]}" -d 64 -c 50 \
        -r 1 --connections "$connections" --threads 2 -q >/dev/null
      after=$(ticks "${server_pid[$kind]}")
      python3 -c "print(f'{($after - $before) / $hz / $items * 1e6:.3f}')" >>"$out/cpu.$workload.$kind"
    done
    cpu[$kind]=$(median <"$out/cpu.$workload.$kind")
  done
  row cpu "${cpu[plaintext]}" "${cpu[tls]}" "${cpu[tokens]}" "${cpu[bearer]}"
  ratios=()
  for kind in "${kinds[@]}"; do
    ratios+=("$(python3 -c "print(f'{${cpu[plaintext]} / ${cpu[$kind]}:.3f}')")")
  done
  row ratio "${ratios[@]}"
done

for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
pids=()

[[ "${1:-}" == "--callgrind" ]] || exit 0

calls=20000
batches=2000
# Two connections: each of the 50 TLS handshakes of 50 new connections would
# weigh more in a 20 000-call window than the calls themselves.
callgrind_connections=${CALLGRIND_CONNECTIONS:-2}
# instructions KIND WORKLOAD: the server's instructions for `calls` unary
# Gets, or for `batches` batches of 16 keys, of that kind of server.
instructions() {
  local kind=$1 workload=$2 port pid
  local -a load warm
  case $workload in
    unary) load=(-t get -n "$calls") warm=(-t get -n 2000) ;;
    batch) load=(-t mget -P 16 -n "$batches") warm=(-t mget -P 16 -n 200) ;;
  esac
  port=$(free_port)
  # shellcheck disable=SC2046
  valgrind --tool=callgrind --callgrind-out-file="$out/$kind.%p" \
    "$bin/shoal-server" --listen "127.0.0.1:$port" --admin-listen off --config "$out/server.toml" \
    $(server_flags "$kind") >"$out/$kind.callgrind.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_serving "$kind" "$port"
  # shellcheck disable=SC2046
  "$bin/shoal" $(client_flags "$kind" "$port") bench "${warm[@]}" -r 1 -q -c 50 \
    --connections "$callgrind_connections" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  # shellcheck disable=SC2046
  "$bin/shoal" $(client_flags "$kind" "$port") bench "${load[@]}" -r 1 -q -c 50 \
    --connections "$callgrind_connections" --threads 2 >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  callgrind_annotate "$out/$kind.$pid.1" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
# How the calls fall on the server's two threads moves the count by a few
# hundred instructions from run to run: the median of RUNS.
runs=${CALLGRIND_RUNS:-3}
# report WORKLOAD DIVISOR KIND...: the median per call (or key) of each kind.
report() {
  local workload=$1 divisor=$2
  shift 2
  declare -A counted=()
  for kind in "$@"; do
    for _ in $(seq 1 "$runs"); do
      echo $(($(instructions "$kind" "$workload") / divisor)) >>"$out/callgrind.$workload.$kind"
    done
    counted[$kind]=$(median <"$out/callgrind.$workload.$kind")
  done
  for kind in "$@"; do
    printf '%-10s %10s   plaintext / %s = %s\n' "$kind" "${counted[$kind]}" "$kind" \
      "$(python3 -c "print(f'{${counted[plaintext]} / ${counted[$kind]}:.3f}')")"
  done
}
printf '\nserver instructions per unary Get (median of %s runs)\n' "$runs"
report unary "$calls" "${kinds[@]}"
printf '\nserver instructions per key of a 16-key batch (median of %s runs)\n' "$runs"
report batch $((batches * 16)) plaintext tls
