#!/usr/bin/env bash
# Measure triton_asyncio beside the h11 floor and MLServer (single process) with perf_analyzer,
# using the shared peers harness (run `bash ../shared/bench/peers/setup.sh` once first).
# Usage: bash bench/run_peers.sh [--reps N] [--cases simple:1,simple:8,simple:32,big:8] [...driver flags]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$here/../shared/bench/peers}"
exec python3 "$peers/driver.py" --only floor-h11,mlserver-1proc --protos http --target-protos http \
    --target-cmd "$here/.venv/bin/triton-asyncio" --out "${OUT_DIR:-$here/bench/results}" "$@"
