"""Socket options shared by every listener's connections."""
from __future__ import annotations

import asyncio
import socket


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on TCP sockets: responses are written whole, so Nagle only adds latency."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
