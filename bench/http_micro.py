"""Microbenchmark: server CPU µs per `simple` infer on the HTTP path, in process (no sockets).

Builds the real server (cli.build_server, `simple` from the peers' target repository: INT32
INPUT0/INPUT1 [1,16] -> OUTPUT0/OUTPUT1), wires HttpApp + HttpProtocol to a fake transport and
feeds it perf_analyzer-like requests (binary inputs and outputs, one request per
data_received, keep-alive). The floor server's protocol (../shared/bench/peers/floor/http_h11.py,
h11 plus numpy, no model run) gets the same bytes, beside it. Reps alternate between the two.

Run (from the repository root; best of 5 reps each, µs per request):
    .venv/bin/python bench/http_micro.py [n] [--no-shortcuts] [--profile]
`--no-shortcuts` sends every response through h11 (h11_shortcuts off); `--profile` prints
cProfile's top functions for ours (its timings are inflated).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time

import numpy as np
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR_DIR = os.path.join(os.path.dirname(ROOT), "shared", "bench", "peers", "floor")
REPO = os.path.expanduser("~/.cache/triton-peers/run/target_repo")
sys.path.insert(0, ROOT)

from triton_asyncio.cli import build_server  # noqa: E402
from triton_asyncio.server.cli_args import parse_args  # noqa: E402
from triton_asyncio.server.inference_server import ServerState  # noqa: E402
from triton_asyncio.transport.http.app import HttpApp  # noqa: E402
from triton_asyncio.transport.http.protocol import HttpProtocol  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_protocol_micro import FakeTransport as _CountingTransport  # noqa: E402

_HEADER = json.dumps({
    "inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}
               for n in ("INPUT0", "INPUT1")],
    "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("OUTPUT0", "OUTPUT1")],
}, separators=(",", ":")).encode()
_BODY = _HEADER + np.arange(16, dtype=np.int32).tobytes() + np.ones(16, dtype=np.int32).tobytes()
REQUEST = (b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: localhost:8000\r\nAccept: */*\r\n"
           b"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: %d\r\n"
           b"Content-Length: %d\r\n\r\n" % (len(_HEADER), len(_BODY))) + _BODY


class FakeTransport(_CountingTransport):
    """http_protocol_micro's counting transport, which also takes flow-control calls."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _idle(protocol) -> None:
    """Let an async (queued or threaded) request finish before the next one is fed."""
    while getattr(protocol, "_phase", None) is not None and protocol._phase.value != "reading":
        await asyncio.sleep(0)


async def _measure(protocol, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        protocol.data_received(REQUEST)
        await _idle(protocol)
    return (time.perf_counter() - t0) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=20000)
    ap.add_argument("--no-shortcuts", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    server, errors = build_server(parse_args([f"--model-repository={REPO}"]))
    if errors:
        raise SystemExit(f"model load failed: {errors} (run bench/run_peers.sh once to build {REPO})")
    server.bind_loop(asyncio.get_running_loop())
    server.state = ServerState.READY
    ours = HttpProtocol(HttpApp(server), shortcuts=not a.no_shortcuts)
    ours.connection_made(FakeTransport())
    sys.path.insert(0, FLOOR_DIR)
    import http_h11  # the floor's Protocol

    floor = http_h11.Proto()
    floor.connection_made(FakeTransport())
    for _ in range(3000):  # warm-up: the runner's threaded probes, then the inline path
        ours.data_received(REQUEST)
        while ours._phase.value != "reading":
            await asyncio.sleep(0.0001)
        floor.data_received(REQUEST)
    if a.profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
        await _measure(ours, a.n)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    best = {"ours": float("inf"), "floor": float("inf")}
    for _ in range(5):
        best["ours"] = min(best["ours"], await _measure(ours, a.n))
        best["floor"] = min(best["floor"], await _measure(floor, a.n))
    print(f"{platform.machine()} python {platform.python_version()}; shortcuts "
          f"{'off' if a.no_shortcuts else 'on'}")
    print(f"simple, binary, one request per data_received: ours {best['ours']:.1f} µs/request, "
          f"floor {best['floor']:.1f} µs/request, floor/ours {best['floor'] / best['ours']:.2f}x")
    server.manager.caller.bind(None, None, None)


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
