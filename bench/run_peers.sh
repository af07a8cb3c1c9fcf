#!/usr/bin/env bash
# Measure triton_asyncio beside the wire floors and MLServer (single process) with perf_analyzer,
# using the shared peers harness (run `bash ../shared/bench/peers/setup.sh` once first).
# Usage: [PROTO=http|grpc] bash bench/run_peers.sh [--reps N] [--cases simple:1,simple:8,simple:32,big:8] [...driver flags]
#   PROTO=http (default): beside floor-h11 and mlserver-1proc
#   PROTO=grpc: beside floor-h2raw-upb (the hand-rolled h2 floor), floor-grpcaio-upb and mlserver-1proc
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$here/../shared/bench/peers}"
proto="${PROTO:-http}"
case "$proto" in
  http) only="floor-h11,mlserver-1proc" ;;
  grpc) only="floor-h2raw-upb,floor-grpcaio-upb,mlserver-1proc" ;;
  *) echo "PROTO must be http or grpc" >&2; exit 2 ;;
esac
exec python3 "$peers/driver.py" --only "$only" --protos "$proto" --target-protos "$proto" \
    --target-cmd "$here/.venv/bin/triton-asyncio" --out "${OUT_DIR:-$here/bench/results}" "$@"
