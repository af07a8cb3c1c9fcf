#!/usr/bin/env python3
"""The Python backend against the same identity in ONNX, side by side in one server.

`python_identity` (the example repository's, a TritonPythonModel returning its input) and
`onnx_identity` (an ONNX Identity graph with the same config: FP32 [-1], max_batch_size 8,
dynamic_batching), perf_analyzer at `--concurrency` over HTTP, small (16 floats) and 4 MiB
(1048576 floats) tensors, the two models alternated `--reps` times. Prints per-request time
(1 / throughput: the server is one process on one core, so this is its cost per request), average
latency, and the Python/ONNX differences and ratios (medians of per-rep figures).

Usage: bench/python_backend.py [--reps 3] [--concurrency 8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from onnx import TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from batching import _free_port, _measure, _perf_analyzer, _wait_ready  # noqa: E402
from example_python_models import python_identity  # noqa: E402
from make_example_repo import _onnx_model, _write  # noqa: E402

SHAPES = {"small": 16, "4MiB": 1048576}


def _repo() -> str:
    repo = os.path.join(tempfile.mkdtemp(prefix="py_bench_"), "repo")
    os.makedirs(repo)
    python_identity(repo)
    F32 = TensorProto.FLOAT
    model = _onnx_model("onnx_identity", [("INPUT0", F32, ["n"])], [("OUTPUT0", F32, ["n"])],
                        [("Identity", ["INPUT0"], ["OUTPUT0"], {})])
    config = ('name: "onnx_identity"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
              "dynamic_batching { }\n"
              'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
              'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(repo, "onnx_identity", {1: model}, config)
    return repo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    pa = _perf_analyzer()
    repo = _repo()
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", os.path.join(ROOT, ".venv", "bin", "triton-asyncio"), "--model-repository", repo,
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(http, server)
        url = f"127.0.0.1:{http}"
        for label, elements in SHAPES.items():
            runs: dict[str, list[tuple[float, float]]] = {"onnx_identity": [], "python_identity": []}
            for rep in range(args.reps):
                for model in runs:
                    tput, lat = _measure(pa, model, url, "http", args.concurrency, 3000, ("--shape", f"INPUT0:{elements}"))
                    runs[model].append((tput, lat))
                    print(f"rep {rep + 1} {label:5s} {model:15s} {tput:9.1f} infer/s  {1e6 / tput:8.1f} µs/request  "
                          f"avg latency {lat:8.0f} µs", flush=True)
            pairs = list(zip(runs["onnx_identity"], runs["python_identity"], strict=True))
            added = statistics.median(1e6 / p[0] - 1e6 / o[0] for o, p in pairs)
            lat_added = statistics.median(p[1] - o[1] for o, p in pairs)
            ratio = statistics.median(p[0] / o[0] for o, p in pairs)
            print(f"{label}: Python adds {added:.0f} µs per request (1/throughput), {lat_added:.0f} µs of average "
                  f"latency; Python/ONNX throughput {ratio:.2f}x", flush=True)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
