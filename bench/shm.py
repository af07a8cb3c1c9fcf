#!/usr/bin/env python3
"""System shared memory against binary tensors over the socket, and the server's own cost at 16 MiB.

1. perf_analyzer at concurrency `--concurrency` on FP32 identity models of 1 MiB and 16 MiB
   (`backend: "identity"`: no compute, so the server and the wire are what is measured), HTTP
   binary tensors vs `--shared-memory=system` (inputs and outputs in regions), alternated `--reps`
   times in one server. Prints medians and the shm/binary ratio.
2. In process: InferenceServer.infer on a 16 MiB request whose input and output sit in registered
   regions (input read in place, output copied into its region), against one numpy copy of 16 MiB
   between two buffers (one memcpy). Prints both and the ratio.

Usage: bench/shm.py [--reps 3] [--concurrency 8]
The server runs on CPU 0 and perf_analyzer on CPU 1 (taskset), as in the peers harness.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing import shared_memory

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from batching import _free_port, _measure, _perf_analyzer, _wait_ready  # noqa: E402

SIZES = {"ident_1m": 262144, "ident_16m": 4194304}  # FP32 elements


def _repo() -> str:
    repo = os.path.join(tempfile.mkdtemp(prefix="shm_bench_"), "repo")
    for name, n in SIZES.items():
        os.makedirs(os.path.join(repo, name, "1"))
        with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
            f.write(f'name: "{name}"\nbackend: "identity"\nmax_batch_size: 8\n'
                    f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {n} ] }} ]\n'
                    f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {n} ] }} ]\n')
    return repo


def perf_analyzer_part(args, repo: str) -> None:
    pa = _perf_analyzer()
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", os.path.join(ROOT, ".venv", "bin", "triton-asyncio"), "--model-repository", repo,
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--allow-client-shm=true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(http, server)
        url = f"127.0.0.1:{http}"
        for model, n in SIZES.items():
            runs: dict[str, list[float]] = {"binary": [], "shm": []}
            for rep in range(args.reps):
                for mode in runs:
                    extra = ("--shared-memory=system", f"--output-shared-memory-size={4 * n}") if mode == "shm" else ()
                    tput, lat = _measure(pa, model, url, "http", args.concurrency, 3000, extra)
                    runs[mode].append(tput)
                    print(f"rep {rep + 1} {model} {mode:6s} {tput:9.1f} infer/s  avg latency {lat / 1000:7.2f} ms",
                          flush=True)
            ratios = [s / b for b, s in zip(runs["binary"], runs["shm"], strict=True)]
            print(f"{model}: binary median {statistics.median(runs['binary']):.1f}/s, shm median "
                  f"{statistics.median(runs['shm']):.1f}/s, shm/binary {statistics.median(ratios):.2f}x "
                  f"(runs {', '.join(f'{r:.2f}' for r in ratios)})")
    finally:
        server.terminate()
        server.wait(30)


async def in_process_part(args, repo: str) -> None:
    from triton_asyncio.core.request import InferenceRequest, RequestedOutput, ShmRef
    from triton_asyncio.memory.shm_registry import ShmRegistry
    from triton_asyncio.repository.loader import LoadSettings
    from triton_asyncio.repository.manager import RepositoryManager
    from triton_asyncio.server.inference_server import InferenceServer

    n = SIZES["ident_16m"]
    nbytes = 4 * n
    manager = RepositoryManager([repo], LoadSettings("config.pbtxt", auto_complete=True))
    manager.scan()
    assert not manager.load("ident_16m")
    server = InferenceServer(manager, shm=ShmRegistry(enabled=True))
    tag = uuid.uuid4().hex[:8]
    seg_in = shared_memory.SharedMemory(f"bench_in_{tag}", create=True, size=nbytes)
    seg_out = shared_memory.SharedMemory(f"bench_out_{tag}", create=True, size=nbytes)
    try:
        np.ndarray(n, np.float32, seg_in.buf)[:] = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        server.shm.register_system("in", f"/bench_in_{tag}", 0, nbytes)
        server.shm.register_system("out", f"/bench_out_{tag}", 0, nbytes)
        model = server.model("ident_16m")

        def request() -> InferenceRequest:
            r = InferenceRequest("ident_16m", shm_inputs={"INPUT0": ShmRef("in", nbytes, 0, "FP32", [1, n])},
                                 outputs={"OUTPUT0": RequestedOutput("OUTPUT0", shm=ShmRef("out", nbytes))},
                                 shm_outputs=True)
            return r

        src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
        server_us, copy_us = [], []
        for _ in range(args.reps * 10):
            t0 = time.perf_counter_ns()
            await server.infer(model, request())
            t1 = time.perf_counter_ns()
            np.copyto(dst, src)
            t2 = time.perf_counter_ns()
            server_us.append((t1 - t0) / 1000)
            copy_us.append((t2 - t1) / 1000)
        out = np.ndarray(n, np.float32, seg_out.buf)
        assert (out == np.ndarray(n, np.float32, seg_in.buf)).all()
        del out
        s, c = statistics.median(server_us), statistics.median(copy_us)
        print(f"16 MiB through the server with shm input and output: {s:.0f} µs per request (median of "
              f"{len(server_us)}); one 16 MiB memcpy: {c:.0f} µs; ratio {s / c:.2f}x")
    finally:
        server.shm.close()
        await manager.unload_all()
        for seg in (seg_in, seg_out):
            seg.close()
            seg.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-perf-analyzer", action="store_true")
    args = ap.parse_args()
    repo = _repo()
    asyncio.run(in_process_part(args, repo))
    if not args.skip_perf_analyzer:
        perf_analyzer_part(args, repo)


if __name__ == "__main__":
    main()
