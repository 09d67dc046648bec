#!/usr/bin/env bash
# Hostile and unlucky clients against the release server: unfinished request
# bodies, 2 000 silent sockets, stalled readers of a 300 000-field hash,
# SIGTERM with a Watch open, a storm of values up to 8 MiB under a 32 MiB
# budget, a rapid-reset flood and 2 000 idle HTTP/2 connections. Each
# scenario starts its own server on a loopback port and prints its figure
# beside its goal.
#
#   bash server/bench/benches/hostile.sh              (every scenario)
#   bash server/bench/benches/hostile.sh storm        (one of them)
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --quiet --release -p shoal-server
cargo run --quiet --release -p shoal-bench --example hostile -- "$@"
