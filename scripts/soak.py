#!/usr/bin/env python
"""Soak test: N mixed requests against a server this script starts, with memory sampled throughout.

    .venv/bin/python scripts/soak.py [--requests 100000] [--workers 4] [--sample-secs 2]

It builds the example repository's `simple` (ONNX) and `python_identity` (Python backend) models
in a temporary directory (scripts/make_example_repo.py), starts `python -m triton_asyncio` on free
loopback ports with `--allow-client-shm=true`, and runs worker threads that cycle through five
kinds of request, checking every answer:

  http     simple over HTTP (binary tensors)          grpc     simple over gRPC
  stream   simple over one gRPC ModelStreamInfer      shm      simple over HTTP, inputs and outputs
  python   python_identity over gRPC                           in system shared memory

A sampler reads the RSS of the server and of its Python-backend stubs (its child processes) from
/proc every --sample-secs. The report gives the counts (lost = sent without a right or wrong
answer), and the RSS trend after warm-up (the first --warmup fraction of the requests): first,
last, max and a least-squares slope in MiB per 10,000 requests. Exit status 1 if any response was
lost or wrong, or if the server died.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("http", "grpc", "stream", "shm", "python")
SHM_SIZE = 64  # one INT32 [1, 16] tensor


# -- the server --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_repo(path: str) -> str:
    spec = importlib.util.spec_from_file_location("make_example_repo", os.path.join(ROOT, "scripts",
                                                                                    "make_example_repo.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_repository(path, ["simple", "python_identity"])


@dataclass
class Server:
    proc: subprocess.Popen
    http: str
    grpc: str


def _start_server(repo: str, log_path: str) -> Server:
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    cmd = [sys.executable, "-m", "triton_asyncio", "--model-repository", repo, "--allow-client-shm=true",
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(proc, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; log in {log_path}")
        try:
            with urllib.request.urlopen(f"http://{server.http}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server not ready after 120 s; log in {log_path}")


# -- memory ------------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Descendants of pid, from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_children(kid)]
    return out


@dataclass
class Sample:
    done: int  # requests answered so far
    server: int  # bytes
    stubs: int  # bytes, all children together


class Sampler(threading.Thread):
    def __init__(self, pid: int, period: float, progress: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.progress = pid, period, progress
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.take()
            if self.stop.wait(self.period):
                self.take()
                return

    def take(self) -> None:
        stubs = sum(_rss(child) for child in _children(self.pid))
        self.samples.append(Sample(self.progress(), _rss(self.pid), stubs))


# -- the clients -------------------------------------------------------------------------------
@dataclass
class Counts:
    by_kind: dict[str, collections.Counter] = field(
        default_factory=lambda: {kind: collections.Counter() for kind in KINDS})
    errors: collections.Counter = field(default_factory=collections.Counter)  # first words of each error
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0

    def record(self, kind: str, outcome: str, error: str = "") -> None:
        with self.lock:
            self.by_kind[kind][outcome] += 1
            self.done += 1
            if error:
                self.errors[f"{kind}: {error[:100]}"] += 1


def _simple_inputs(module, rng: np.random.Generator):
    a = rng.integers(-1000, 1000, size=(1, 16), dtype=np.int32)
    b = rng.integers(-1000, 1000, size=(1, 16), dtype=np.int32)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs, a, b


def _simple_right(result, a: np.ndarray, b: np.ndarray) -> bool:
    return (np.array_equal(result.as_numpy("OUTPUT0"), a + b)
            and np.array_equal(result.as_numpy("OUTPUT1"), a - b))


class Worker(threading.Thread):
    """Cycles through KINDS until `quota` requests are sent; every answer is checked."""

    def __init__(self, index: int, server: Server, quota: int, counts: Counts) -> None:
        super().__init__(daemon=True)
        self.index, self.server, self.quota, self.counts = index, server, quota, counts
        self.rng = np.random.default_rng(index)
        self.tag = f"soak_{os.getpid()}_{index}"

    def run(self) -> None:
        self.http = httpclient.InferenceServerClient(self.server.http, network_timeout=60)
        self.grpc = grpcclient.InferenceServerClient(self.server.grpc)
        self.stream_results: queue.Queue = queue.Queue()
        self.grpc.start_stream(callback=lambda result, error: self.stream_results.put((result, error)))
        self._open_shm()
        try:
            for i in range(self.quota):
                kind = KINDS[(i + self.index) % len(KINDS)]
                try:
                    right = getattr(self, f"_send_{kind}")()
                    self.counts.record(kind, "ok" if right else "wrong")
                except Exception as exc:  # every failure is a lost response: counted and reported
                    self.counts.record(kind, "lost", f"{type(exc).__name__}: {exc}")
        finally:
            self.grpc.stop_stream()
            self._close_shm()
            self.grpc.close()
            self.http.close()

    def _send_http(self) -> bool:
        inputs, a, b = _simple_inputs(httpclient, self.rng)
        return _simple_right(self.http.infer("simple", inputs), a, b)

    def _send_grpc(self) -> bool:
        inputs, a, b = _simple_inputs(grpcclient, self.rng)
        return _simple_right(self.grpc.infer("simple", inputs, client_timeout=60), a, b)

    def _send_stream(self) -> bool:
        inputs, a, b = _simple_inputs(grpcclient, self.rng)
        self.grpc.async_stream_infer("simple", inputs)
        result, error = self.stream_results.get(timeout=60)
        if error is not None:
            raise error
        return _simple_right(result, a, b)

    def _send_python(self) -> bool:
        x = self.rng.standard_normal((1, 8)).astype(np.float32)
        inp = grpcclient.InferInput("INPUT0", [1, 8], "FP32")
        inp.set_data_from_numpy(x)
        return np.array_equal(self.grpc.infer("python_identity", [inp], client_timeout=60).as_numpy("OUTPUT0"), x)

    def _open_shm(self) -> None:
        self.shm_in = shm.create_shared_memory_region(f"{self.tag}_in", f"/{self.tag}_in", 2 * SHM_SIZE)
        self.shm_out = shm.create_shared_memory_region(f"{self.tag}_out", f"/{self.tag}_out", 2 * SHM_SIZE)
        self.http.register_system_shared_memory(f"{self.tag}_in", f"/{self.tag}_in", 2 * SHM_SIZE)
        self.http.register_system_shared_memory(f"{self.tag}_out", f"/{self.tag}_out", 2 * SHM_SIZE)

    def _close_shm(self) -> None:
        for region in ("in", "out"):
            try:
                self.http.unregister_system_shared_memory(f"{self.tag}_{region}")
            except Exception as exc:  # the server may be gone: the regions go with it
                print(f"unregister {self.tag}_{region}: {exc}", file=sys.stderr)
        shm.destroy_shared_memory_region(self.shm_in)
        shm.destroy_shared_memory_region(self.shm_out)

    def _send_shm(self) -> bool:
        _, a, b = _simple_inputs(httpclient, self.rng)
        shm.set_shared_memory_region(self.shm_in, [a, b])
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory(f"{self.tag}_in", SHM_SIZE)
        inputs[1].set_shared_memory(f"{self.tag}_in", SHM_SIZE, offset=SHM_SIZE)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory(f"{self.tag}_out", SHM_SIZE)
        outputs[1].set_shared_memory(f"{self.tag}_out", SHM_SIZE, offset=SHM_SIZE)
        self.http.infer("simple", inputs, outputs=outputs)
        got0 = shm.get_contents_as_numpy(self.shm_out, np.int32, [1, 16])
        got1 = shm.get_contents_as_numpy(self.shm_out, np.int32, [1, 16], offset=SHM_SIZE)
        return np.array_equal(got0, a + b) and np.array_equal(got1, a - b)


# -- the report --------------------------------------------------------------------------------
def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return 0.0
    return float(np.polyfit(xs, ys, 1)[0])


def _trend(samples: list[Sample], attr: str, warm: int) -> str:
    after = [s for s in samples if s.done >= warm] or samples[-1:]
    mib = [getattr(s, attr) / 2**20 for s in after]
    per_10k = _slope([s.done / 1e4 for s in after], mib)
    return (f"{attr}: warm {mib[0]:.1f} MiB, last {mib[-1]:.1f}, max {max(mib):.1f}, "
            f"slope {per_10k:+.2f} MiB per 10k requests ({len(after)} samples after warm-up)")


def _report(counts: Counts, samples: list[Sample], warm: int, elapsed: float, server_alive: bool) -> int:
    total = collections.Counter()
    for kind in KINDS:
        total.update(counts.by_kind[kind])
        print(f"  {kind:7} {dict(counts.by_kind[kind])}")
    print(f"total {dict(total)} in {elapsed:.1f} s ({sum(total.values()) / elapsed:.0f} requests/s)")
    for error, n in counts.errors.most_common(10):
        print(f"  {n} x {error}")
    print(_trend(samples, "server", warm))
    print(_trend(samples, "stubs", warm))
    print(f"server {'alive' if server_alive else 'DEAD'} at the end")
    return 0 if server_alive and total["lost"] == 0 and total["wrong"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests in all (default 100000)")
    parser.add_argument("--workers", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--sample-secs", type=float, default=2.0, help="RSS sampling period (default 2)")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of requests before the trend")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        repo = _build_repo(os.path.join(tmp, "repo"))
        log_path = os.path.join(tmp, "server.log")
        server = _start_server(repo, log_path)
        counts = Counts()
        sampler = Sampler(server.proc.pid, args.sample_secs, lambda: counts.done)
        quotas = [args.requests // args.workers + (i < args.requests % args.workers) for i in range(args.workers)]
        workers = [Worker(i, server, quota, counts) for i, quota in enumerate(quotas)]
        started = time.monotonic()
        try:
            sampler.start()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        finally:
            elapsed = time.monotonic() - started
            sampler.stop.set()
            sampler.join()
            alive = server.proc.poll() is None
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(60)
        print(f"soak: {args.requests} requests, {args.workers} workers; server exit {code}")
        status = _report(counts, sampler.samples, int(args.requests * args.warmup), elapsed, alive)
        if status:
            print(open(log_path).read()[-4000:], file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
