#!/usr/bin/env python3
"""What the data plane adds to a request on `simple` (no batching), in process, no network.

Loads the example repository's `simple` (ONNX, a few µs of compute) as the server does and times,
interleaved, `--reps` rounds of `--n` requests each:
  execute     the instance's execute([request]) called directly: the backend floor
  server      InferenceServer.infer: validation, then the default scheduler (inline fast path)
  submit      validation, then `await scheduler.submit` (the queued path every request takes when
              the fast path cannot run it)
  dynamic     `simple_dyna` with max_queue_delay 0 through InferenceServer.infer: the dynamic
              batcher, one request at a time (the example's 2000 µs delay would be waited out)
  server_c8   InferenceServer.infer with 8 concurrent callers (per-request time = wall / n)
Reports the median per-request µs and each path's overhead over `execute`.

Usage: bench/scheduler_overhead.py [--n 20000] [--reps 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from make_example_repo import build_repository  # noqa: E402

from triton_asyncio.core.request import InferenceRequest  # noqa: E402
from triton_asyncio.core.tensor import Tensor  # noqa: E402
from triton_asyncio.repository.loader import LoadSettings  # noqa: E402
from triton_asyncio.repository.manager import RepositoryManager  # noqa: E402
from triton_asyncio.server.inference_server import InferenceServer  # noqa: E402
from triton_asyncio.server.validate import validate_request  # noqa: E402

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.ones((1, 16), dtype=np.int32)


def _request(model: str) -> InferenceRequest:
    return InferenceRequest(model, inputs={"INPUT0": Tensor("INPUT0", "INT32", [1, 16], array=A),
                                           "INPUT1": Tensor("INPUT1", "INT32", [1, 16], array=B)})


async def _time(fn, n: int) -> float:
    t0 = time.perf_counter_ns()
    await fn(n)
    return (time.perf_counter_ns() - t0) / n / 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    repo = build_repository(os.path.join(tempfile.mkdtemp(), "repo"), ["simple", "simple_dyna"])
    config = os.path.join(repo, "simple_dyna", "config.pbtxt")
    with open(config, encoding="utf-8") as f:
        text = f.read().replace("max_queue_delay_microseconds: 2000", "max_queue_delay_microseconds: 0")
    with open(config, "w", encoding="utf-8") as f:
        f.write(text)
    manager = RepositoryManager([repo], LoadSettings("config.pbtxt", auto_complete=True))
    manager.scan()
    assert not manager.load("simple") and not manager.load("simple_dyna")
    server = InferenceServer(manager)
    server.bind_loop(asyncio.get_running_loop())
    simple, dyna = server.model("simple"), server.model("simple_dyna")
    instance = simple.instances[0]

    async def execute(n):
        for _ in range(n):
            instance.execute([_request("simple")])

    async def via_server(n):
        for _ in range(n):
            await server.infer(simple, _request("simple"))

    async def via_submit(n):
        for _ in range(n):
            request = _request("simple")
            validate_request(request, simple.spec)
            await simple.scheduler.submit(request)

    async def via_dynamic(n):
        for _ in range(n):
            await server.infer(dyna, _request("simple_dyna"))

    async def server_c8(n):
        async def worker(k):
            for _ in range(k):
                await server.infer(simple, _request("simple"))
        await asyncio.gather(*(worker(n // 8) for _ in range(8)))

    paths = {"execute": execute, "server": via_server, "submit": via_submit, "dynamic": via_dynamic,
             "server_c8": server_c8}
    for fn in paths.values():  # warm up, and let the runners' probes settle
        await fn(2000)
    results: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.reps):
        for name, fn in paths.items():
            results[name].append(await _time(fn, args.n))
    floor = statistics.median(results["execute"])
    print(f"{'path':10s} {'µs/request':>11s} {'over execute':>13s}   runs")
    for name, runs in results.items():
        med = statistics.median(runs)
        print(f"{name:10s} {med:11.2f} {med - floor:13.2f}   {' '.join(f'{r:.2f}' for r in runs)}")
    await manager.unload_all()


if __name__ == "__main__":
    uvloop.run(main())
