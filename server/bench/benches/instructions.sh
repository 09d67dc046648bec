#!/usr/bin/env bash
# Instructions and simulated cache misses per operation, shoal's engine
# against quick_cache in one run, on the workload of benches/engine.rs (one
# thread). callgrind counts what the CPU is asked to do rather than how long
# it takes, so the figures repeat exactly from run to run on a shared
# machine: use it to tell apart changes of a few percent that wall time
# cannot. It does not see what a miss costs in time.
#
#   bash server/bench/benches/instructions.sh        (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/../../.."

cargo build --quiet --release -p shoal-bench --example engine_instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

printf '%-12s %14s %14s\n' cache "instr / op" "D1 miss / op"
for cache in shoal quick_cache; do
    valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*measured_pass*' \
        --callgrind-out-file="$out/$cache" \
        target/release/examples/engine_instructions "$cache" >"$out/$cache.stdout" 2>"$out/$cache.log"
    ops=$(awk '{print $2}' "$out/$cache.stdout")
    # The summary line lists Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw. The
    # simulated D1 is 48 KiB, as on this machine; its last level is the
    # whole L3, which the working set fits, so last-level misses are left
    # out.
    awk -v cache="$cache" -v ops="$ops" '/Collected :/ {
        printf "%-12s %14.1f %14.2f\n", cache, $4 / ops, ($8 + $9) / ops
    }' "$out/$cache.log"
done
