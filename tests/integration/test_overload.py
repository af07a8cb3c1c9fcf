"""Overload: a slow model with a bounded queue (and one with a queue timeout) driven at about 4x
the rate it can sustain, by gRPC threads sending open loop and HTTP threads in a closed loop.

What must hold: every rejection is Triton's (`Exceeds maximum queue size` or `Request timeout
expired`, HTTP 503 / gRPC UNAVAILABLE), every accepted request gets the right answer, accepted
latency stays within a generous multiple of the unloaded latency, and the server neither crashes
nor deadlocks (it answers at once afterwards and exits 0).
"""
from __future__ import annotations

import collections
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import start_server, stop_server

EXEC_S = 0.04  # each execute sleeps this long in the stub
MAX_BATCH = 2
SUSTAINABLE = MAX_BATCH / EXEC_S  # requests/s one instance can finish: 50
OVERLOAD = 4
GRPC_THREADS, HTTP_THREADS = 6, 2
DURATION = 4.0  # seconds of overload per model
LATENCY_FACTOR = 15  # accepted p99 must stay under this many unloaded medians
QUEUE_SIZE = 4
QUEUE_TIMEOUT_US = 100_000

MODEL_PY = f'''
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({EXEC_S})  # one batch costs the same whatever its size: a fixed capacity
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", r.inputs()[0].as_numpy() * 2)])
                for r in requests]
'''
POLICIES = {
    "overload_queue_size": (f"max_queue_size: {QUEUE_SIZE}", "Exceeds maximum queue size"),
    "overload_queue_timeout": (f"timeout_action: REJECT default_timeout_microseconds: {QUEUE_TIMEOUT_US}",
                               "Request timeout expired"),
}


def _write_model(repo: str, name: str, policy: str) -> None:
    os.makedirs(os.path.join(repo, name, "1"))
    with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
        f.write(f'name: "{name}"\nbackend: "python"\nmax_batch_size: {MAX_BATCH}\n'
                f"dynamic_batching {{ default_queue_policy {{ {policy} }} }}\n"
                'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    with open(os.path.join(repo, name, "1", "model.py"), "w") as f:
        f.write(MODEL_PY)


@pytest.fixture(scope="module")
def overload_server(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("overload"))
    for name, (policy, _) in POLICIES.items():
        _write_model(repo, name, policy)
    srv = start_server(repo, os.path.join(repo, "server.log"))
    yield srv
    code = stop_server(srv)
    assert code == 0, srv.log()


@dataclass
class Tally:
    counts: collections.Counter = field(default_factory=collections.Counter)
    latencies: list = field(default_factory=list)  # seconds, accepted requests only
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, latency: float | None = None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if latency is not None:
                self.latencies.append(latency)


def _inputs(module, value: float):
    x = np.full((1, 4), value, dtype=np.float32)
    inp = module.InferInput("INPUT0", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    return [inp], x


def _judge(tally: Tally, protocol: str, started: float, x, result, error, expected: str) -> None:
    """Classify one outcome: right answer, Triton's rejection for this policy, or anything else."""
    if error is None:
        right = np.array_equal(result.as_numpy("OUTPUT0"), x * 2)
        tally.record("ok" if right else "wrong", time.monotonic() - started)
        return
    status, message = str(error.status() or ""), error.message() or ""
    want = "StatusCode.UNAVAILABLE" if protocol == "grpc" else "503"
    tally.record("rejected" if expected in message and status == want else f"other: {status} {message}")


def _grpc_open_loop(url: str, model: str, expected: str, rate: float, stop: threading.Event, tally: Tally) -> None:
    """async_infer at a fixed pace, whatever the answers: the offered load does not back off."""
    client = grpcclient.InferenceServerClient(url)
    interval, next_at, n = 1 / rate, time.monotonic(), 0
    pending = threading.Semaphore(0)
    while not stop.is_set():
        n += 1
        inputs, x = _inputs(grpcclient, float(n))
        started = time.monotonic()

        def done(result, error, started=started, x=x):
            _judge(tally, "grpc", started, x, result, error, expected)
            pending.release()

        client.async_infer(model, inputs, callback=done, client_timeout=30)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    for _ in range(n):  # every answer in before the client goes away
        if not pending.acquire(timeout=30):
            tally.record("lost")
    client.close()


def _http_closed_loop(url: str, model: str, expected: str, rate: float, stop: threading.Event,
                      tally: Tally) -> None:
    """One request at a time, paced to `rate` at most (a rejection comes back at once)."""
    client = httpclient.InferenceServerClient(url, network_timeout=30)
    interval, next_at, n = 1 / rate, time.monotonic(), 0
    while not stop.is_set():
        next_at = max(next_at + interval, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
        n += 1
        inputs, x = _inputs(httpclient, -float(n))
        started = time.monotonic()
        try:
            result, error = client.infer(model, inputs), None
        except InferenceServerException as exc:
            result, error = None, exc
        _judge(tally, "http", started, x, result, error, expected)
    client.close()


def _unloaded_latency(url: str, model: str) -> float:
    client = grpcclient.InferenceServerClient(url)
    samples = []
    for i in range(10):
        inputs, x = _inputs(grpcclient, float(i))
        started = time.monotonic()
        result = client.infer(model, inputs)
        samples.append(time.monotonic() - started)
        assert np.array_equal(result.as_numpy("OUTPUT0"), x * 2)
    client.close()
    return statistics.median(samples)


@pytest.mark.parametrize("model", sorted(POLICIES))
def test_overload_rejects_with_triton_errors_and_stays_responsive(overload_server, model):
    expected = POLICIES[model][1]
    unloaded = _unloaded_latency(overload_server.grpc_url, model)
    tally, stop = Tally(), threading.Event()
    # three quarters of the load over gRPC, the rest over HTTP
    # the open-loop gRPC threads alone offer OVERLOAD x capacity; the closed-loop HTTP threads add
    # what they can on top (a rejection comes back at once, an accepted request waits its turn)
    grpc_rate = OVERLOAD * SUSTAINABLE / GRPC_THREADS
    http_rate = OVERLOAD * SUSTAINABLE * 0.25 / HTTP_THREADS
    threads = [threading.Thread(target=_grpc_open_loop, daemon=True,
                                args=(overload_server.grpc_url, model, expected, grpc_rate, stop, tally))
               for _ in range(GRPC_THREADS)]
    threads += [threading.Thread(target=_http_closed_loop, daemon=True,
                                 args=(overload_server.http_url, model, expected, http_rate, stop, tally))
                for _ in range(HTTP_THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(DURATION)
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    counts, latencies = tally.counts, sorted(tally.latencies)
    total = sum(counts.values())
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    print(f"{model}: {dict(counts)} in {elapsed:.1f} s; offered {total / elapsed:.0f}/s vs sustainable "
          f"{SUSTAINABLE:.0f}/s; accepted {counts['ok'] / elapsed:.0f}/s; latency unloaded {unloaded * 1e3:.0f} ms, "
          f"accepted p50 {p50 * 1e3:.0f} ms p99 {p99 * 1e3:.0f} ms")
    assert not any(t.is_alive() for t in threads), "a client is stuck: the server deadlocked?"
    assert counts["wrong"] == 0 and counts["lost"] == 0
    others = {k: v for k, v in counts.items() if k.startswith("other")}
    assert not others, others
    assert counts["ok"] > 0 and counts["rejected"] > 0
    assert total / elapsed > 2 * SUSTAINABLE, "the load never got far past capacity"
    assert p99 < LATENCY_FACTOR * unloaded, (p99, unloaded)
    # still responsive right after the storm, at the unloaded pace
    assert _unloaded_latency(overload_server.grpc_url, model) < LATENCY_FACTOR * unloaded
