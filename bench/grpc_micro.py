"""Microbenchmark: server CPU µs per unary ModelInfer on the gRPC path, in process (no sockets).

Builds the real server (cli.build_server, `simple` from the peers' target repository: INT32
INPUT0/INPUT1 [1,16] -> OUTPUT0/OUTPUT1), wires a GrpcProtocol + GrpcService to a fake
transport, and drives it with an h2 client connection sending perf_analyzer-like requests
(grpc-c++'s headers, raw_input_contents, both outputs requested). The server's output is fed
back to the client, which acknowledges the data, so flow-control windows stay real. Only the
server's time is counted: data_received plus the loop turns until the response is written; the
client's h2 work happens outside the clock. The floor server's protocol
(../shared/bench/peers/floor/grpc_h2raw.py, no model run) is measured the same way, beside it.

Run (from the repository root; best of 5 reps, µs per request):
    .venv/bin/python bench/grpc_micro.py [n] [--only ours|floor] [--streams 1,8] [--profile]
`--streams 8` sends 8 interleaved calls per data_received. `--profile` prints cProfile's top
functions for ours, server side only (its timings are inflated).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR_DIR = os.path.join(os.path.dirname(ROOT), "shared", "bench", "peers", "floor")
REPO = os.path.expanduser("~/.cache/triton-peers/run/target_repo")
sys.path.insert(0, ROOT)

from triton_asyncio.cli import build_server  # noqa: E402
from triton_asyncio.pb import grpc_service_pb2 as pb  # noqa: E402
from triton_asyncio.server.cli_args import parse_args  # noqa: E402
from triton_asyncio.server.inference_server import ServerState  # noqa: E402
from triton_asyncio.transport.grpc.protocol import GrpcProtocol  # noqa: E402
from triton_asyncio.transport.grpc.service import GrpcService  # noqa: E402

HEADERS = [(b":scheme", b"http"), (b":method", b"POST"), (b":authority", b"localhost:8001"),
           (b":path", b"/inference.GRPCInferenceService/ModelInfer"), (b"te", b"trailers"),
           (b"content-type", b"application/grpc"), (b"user-agent", b"grpc-c++/1.67.1 grpc-c/44.0.0 (linux; chttp2)"),
           (b"grpc-accept-encoding", b"identity, deflate, gzip")]


def infer_message() -> bytes:
    req = pb.ModelInferRequest(model_name="simple", model_version="")
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    for name in ("OUTPUT0", "OUTPUT1"):
        req.outputs.add(name=name)
    req.raw_input_contents.append(np.arange(16, dtype=np.int32).tobytes())
    req.raw_input_contents.append(np.ones(16, dtype=np.int32).tobytes())
    body = req.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


MESSAGE = infer_message()


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks) -> None:
        for c in chunks:
            self.write(c)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def get_extra_info(self, name, default=None):
        return default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise AssertionError("server closed the connection")


class Client:
    """grpc-c++-like client side: large receive window, acknowledges what it reads."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4 * 2**20})
        self.h2.initiate_connection()
        self.transport = Transport()
        self.protocol = protocol
        protocol.connection_made(self.transport)
        self.open: set[int] = set()
        self.server_s = 0.0
        self.profiler = None  # a cProfile.Profile enabled only while the server runs
        self.receive(self.transport.take())
        self.protocol.data_received(self.h2.data_to_send())
        self.receive(self.transport.take())

    def receive(self, data: bytes) -> None:
        if not data:
            return
        for ev in self.h2.receive_data(data):
            t = type(ev)
            if t is h2.events.DataReceived:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif t is h2.events.StreamEnded:
                self.open.discard(ev.stream_id)
            elif t is h2.events.TrailersReceived:
                if ev.headers[0] != (b"grpc-status", b"0"):
                    raise AssertionError(f"call failed: {ev.headers}")
            elif t is h2.events.StreamReset:
                raise AssertionError(f"stream reset: {ev}")

    async def calls(self, streams: int) -> None:
        """`streams` calls sent in one chunk; returns when all are answered."""
        c = self.h2
        for _ in range(streams):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, HEADERS)
            c.send_data(sid, MESSAGE, end_stream=True)
            self.open.add(sid)
        data = c.data_to_send()
        prof = self.profiler
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        self.protocol.data_received(data)
        self.server_s += time.perf_counter() - t0
        if prof is not None:
            prof.disable()
        self.receive(self.transport.take())
        while self.open:
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter()
            await asyncio.sleep(0)
            self.server_s += time.perf_counter() - t0
            if prof is not None:
                prof.disable()
            self.receive(self.transport.take())


def ours() -> asyncio.Protocol:
    server, _ = build_server(parse_args(["--model-repository=" + REPO, "--log-error=false"]))
    server.bind_loop(asyncio.get_running_loop())
    server.state = ServerState.READY
    return GrpcProtocol(GrpcService(server))


def floor() -> asyncio.Protocol:
    sys.path.insert(0, FLOOR_DIR)
    import grpc_h2raw
    return grpc_h2raw.Proto()


async def measure(make, n: int, streams: int, reps: int = 5, profile: bool = False) -> float:
    client = Client(make())
    for _ in range(max(200, n // 10)):
        await client.calls(streams)
    if profile:
        import cProfile
        client.profiler = cProfile.Profile()
    best = float("inf")
    rounds = max(1, n // streams)
    for _ in range(reps):
        client.server_s = 0.0
        for _ in range(rounds):
            await client.calls(streams)
        best = min(best, client.server_s / (rounds * streams) * 1e6)
    if client.profiler is not None:
        import pstats
        pstats.Stats(client.profiler).sort_stats("tottime").print_stats(45)
    return best


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=5000)
    ap.add_argument("--only", choices=("ours", "floor"))
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()} {platform.machine()}, "
          f"{os.cpu_count()} cpus, n={a.n}")
    for streams in [int(s) for s in a.streams.split(",")]:
        row = {}
        if a.only in (None, "ours"):
            row["ours"] = await measure(ours, a.n, streams, profile=a.profile)
        if a.only in (None, "floor"):
            row["floor"] = await measure(floor, a.n, streams)
        text = "  ".join(f"{k} {v:6.1f} us/req" for k, v in row.items())
        if len(row) == 2:
            text += f"  floor/ours {row['floor'] / row['ours']:.2f}x"
        print(f"streams={streams}: {text}", flush=True)


if __name__ == "__main__":
    asyncio.set_event_loop(uvloop.new_event_loop())
    asyncio.get_event_loop().run_until_complete(main())
