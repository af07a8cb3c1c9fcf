#!/usr/bin/env python3
"""Dynamic batching vs none, side by side: the same MLP (bench/make_bench_repo.py) served as `mlp`
(each request executes alone) and `mlp_dyna` (dynamic batcher), one server, perf_analyzer at one
concurrency, the two models alternated `--reps` times. Prints each run and the medians and ratio.

Usage: bench/batching.py [--reps 5] [--concurrency 32] [--proto http|grpc]
The server runs on CPU 0 and perf_analyzer on CPU 1 (taskset), as in the peers harness.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from make_bench_repo import build  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _perf_analyzer() -> str:
    for path in (os.path.join(ROOT, ".venv", "bin", "perf_analyzer_cpp"),
                 os.path.expanduser("~/.cache/triton-peers/bin/perf_analyzer")):
        if os.access(path, os.X_OK):
            return path
    sys.exit("perf_analyzer not found (scripts/install_perf_analyzer.sh)")


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit("server not ready")


def _measure(pa: str, model: str, url: str, proto: str, concurrency: int, window_ms: int,
             extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """perf_analyzer on CPU 1 at one concurrency: (throughput infer/s, average latency µs)."""
    cmd = ["taskset", "-c", "1", pa, "-m", model, "-u", url, "-i", proto, "--concurrency-range", str(concurrency),
           "-p", str(window_ms), "-s", "25", "--max-trials", "6", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    tput = re.search(r"Throughput: ([\d.]+) infer/sec", out)
    lat = re.search(r"Avg latency: (\d+) usec", out)
    if not tput:
        sys.exit(f"perf_analyzer failed:\n{out}")
    return float(tput.group(1)), float(lat.group(1)) if lat else float("nan")


def _stats(port: int, model: str) -> tuple[int, int]:
    import json
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/stats") as r:
        s = json.load(r)["model_stats"][0]
    return int(s["inference_count"]), int(s["execution_count"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--proto", default="http", choices=("http", "grpc"))
    ap.add_argument("--window-ms", type=int, default=3000)
    args = ap.parse_args()
    pa = _perf_analyzer()
    repo = build(os.path.join(tempfile.mkdtemp(prefix="bench_repo_"), "repo"))
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", os.path.join(ROOT, ".venv", "bin", "triton-asyncio"), "--model-repository", repo,
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--log-verbose", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(http, server)
        url = f"127.0.0.1:{http if args.proto == 'http' else grpc}"
        runs: dict[str, list[tuple[float, float]]] = {"mlp": [], "mlp_dyna": []}
        for rep in range(args.reps):
            for model in runs:
                tput, lat = _measure(pa, model, url, args.proto, args.concurrency, args.window_ms)
                runs[model].append((tput, lat))
                print(f"rep {rep + 1} {model:9s} {tput:9.1f} infer/s  avg latency {lat / 1000:8.2f} ms", flush=True)
        med = {m: statistics.median(t for t, _ in r) for m, r in runs.items()}
        ratios = [d[0] / n[0] for n, d in zip(runs["mlp"], runs["mlp_dyna"], strict=True)]
        for model in runs:
            inferences, executions = _stats(http, model)
            print(f"{model:9s} median {med[model]:9.1f} infer/s; statistics: {inferences} inferences in "
                  f"{executions} executions ({inferences / max(executions, 1):.1f} per execution)")
        print(f"ratio mlp_dyna / mlp (median of per-rep ratios): {statistics.median(ratios):.2f}x "
              f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
