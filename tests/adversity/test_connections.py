"""Many connections: 2000 idle keep-alive HTTP connections (plus idle gRPC ones), and a storm of
connects and closes of every kind. The server must keep serving through both, hold no task per
idle connection, and come back to its baseline tasks and RSS once they are gone."""
from __future__ import annotations

import socket
import struct
import threading

from .conftest import baseline, check_recovered, check_serves, rss, task_count
from .test_slow_clients import H2_PREFACE

IDLE_HTTP = 2000
IDLE_GRPC = 200
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
STORM_THREADS = 4
STORM_PER_THREAD = 400
REUSE_SLACK = 3 * 2**20  # RSS a second identical round may add
PER_CONNECTION_RSS = 64 * 1024  # generous: an idle connection costs a protocol object, h11 and a timer


def _recv_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_2000_idle_keepalive_connections(debug_server):
    """Two rounds: the first may leave RSS up (CPython and glibc keep the freed memory for reuse),
    the second must reuse it: a leak of a few KiB per connection would show as growth."""
    base = baseline(debug_server)
    after_first = _idle_round(debug_server, base)
    after_second = _idle_round(debug_server, base)
    print(f"idle rounds: RSS {base.rss / 2**20:.1f} -> {after_first / 2**20:.1f} -> {after_second / 2**20:.1f} MiB")
    assert after_second - after_first < REUSE_SLACK
    check_recovered(debug_server, base, "idle connections")


def _idle_round(server, base) -> int:
    """Open and use the idle connections, check the server meanwhile, close them; RSS after."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(IDLE_HTTP):
            s = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
            sockets.append(s)
            s.sendall(LIVE)
            assert _recv_head(s).startswith(b"HTTP/1.1 200 ")
        for _ in range(IDLE_GRPC):
            s = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10)
            sockets.append(s)
            s.sendall(H2_PREFACE)
        check_serves(server)
        held_tasks, held_rss = task_count(server), rss(server.proc.pid)
        print(f"{IDLE_HTTP} + {IDLE_GRPC} idle: tasks {held_tasks}, RSS +{(held_rss - base.rss) / 2**20:.1f} MiB")
        assert held_tasks <= base.tasks  # an idle connection holds no task
        assert held_rss - base.rss < len(sockets) * PER_CONNECTION_RSS
        for s in sockets[:IDLE_HTTP:97]:  # still usable, not merely open
            s.sendall(LIVE)
            assert _recv_head(s).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in sockets:
            s.close()
    check_recovered(server, base, "idle round")
    return rss(server.proc.pid)


def _storm(port: int, grpc_port: int, seed: int, errors: list) -> None:
    """Connect and leave in four ways, round robin: at once, with RST, mid-request, after an answer."""
    for i in range(STORM_PER_THREAD):
        kind = (i + seed) % 5
        try:
            s = socket.create_connection(("127.0.0.1", grpc_port if kind == 4 else port), timeout=10)
            with s:
                if kind == 1:  # RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif kind == 2:
                    s.sendall(LIVE[:20])
                elif kind == 3:
                    s.sendall(LIVE)
                    _recv_head(s)
                elif kind == 4:
                    s.sendall(H2_PREFACE[:30])
        except OSError as exc:  # the listener's backlog may overflow briefly: a refused connect is fair
            errors.append(exc)


def test_connection_storm(debug_server):
    base = baseline(debug_server)
    errors: list[OSError] = []
    threads = [threading.Thread(target=_storm, args=(debug_server.http_port, debug_server.grpc_port, n, errors))
               for n in range(STORM_THREADS)]
    for thread in threads:
        thread.start()
    check_serves(debug_server)  # during the storm
    for thread in threads:
        thread.join(60)
    print(f"storm: {STORM_THREADS * STORM_PER_THREAD} connections, {len(errors)} client-side errors")
    assert len(errors) < STORM_THREADS * STORM_PER_THREAD // 10, errors[:5]
    check_recovered(debug_server, base, "storm")
