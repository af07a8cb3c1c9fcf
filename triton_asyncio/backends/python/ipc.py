"""The control channel between the server and a Python-backend stub: a closed command enum and frames.

Rules: stdlib only (the stub imports this file as a top-level module, from any interpreter).
A frame is a 4-byte little-endian body length, one command byte, then the body: metadata encoded
with marshal version 4 (plain dicts, lists, str, int, bytes, None). Tensor payloads never travel
here unless the arena is full; they live in the shared-memory arena (arena.py) and frames carry
their offsets. `FrameDecoder` is sans-I/O; `Channel` adds a blocking socket and a send lock.
"""
from __future__ import annotations

import enum
import marshal
import socket
import struct
import threading
from typing import Any

HEADER = struct.Struct("<IB")
MARSHAL_VERSION = 4
MAX_FRAME = 1 << 31  # a body this large is a corrupt stream, not a message
_RECV_SIZE = 1 << 16


class Cmd(enum.IntEnum):
    """Every message either side may send; anything else is a protocol error."""

    # server -> stub
    INIT = 1  # {"args": {...}, "model_path", "decoupled", "model_name"}
    EXECUTE = 2  # {"batch": id, "requests": [request dict]}
    FINALIZE = 3  # {}
    AUTO_COMPLETE = 4  # {"config": json str}
    BLS_RESULT = 5  # {"call": id, "response": response dict | None, "error": (code, msg) | None, "final": bool}
    FREE = 6  # {"offsets": [int]}: blocks of the receiver's arena the sender no longer uses
    CANCEL = 7  # {"requests": [id]}: the clients of these (decoupled) requests went away
    # stub -> server
    READY = 20  # {"pid": int}: the stub is up and has mapped both arenas
    INIT_DONE = 21  # {"error": str | None}
    EXECUTE_DONE = 22  # {"batch": id, "responses": [response dict] | None, "error": str | None}
    RESPONSE = 23  # {"request": id, "response": response dict | None, "final": bool}: decoupled send
    BLS_CALL = 24  # {"call": id, "request": request dict, "decoupled": bool}
    LOG = 25  # {"level": str, "msg": str}
    FINALIZE_DONE = 26  # {"error": str | None}
    AUTO_COMPLETE_DONE = 27  # {"config": json str | None, "error": str | None}


class ProtocolError(Exception):
    """The byte stream does not hold valid frames."""


def encode(cmd: Cmd, meta: Any) -> bytes:
    """One frame: header then marshal body."""
    body = marshal.dumps(meta, MARSHAL_VERSION)
    return HEADER.pack(len(body), cmd) + body


def decode_body(cmd_byte: int, body: bytes | memoryview) -> tuple[Cmd, Any]:
    try:
        cmd = Cmd(cmd_byte)
    except ValueError:
        raise ProtocolError(f"unknown command {cmd_byte}") from None
    try:
        return cmd, marshal.loads(body)
    except (EOFError, ValueError, TypeError) as exc:
        raise ProtocolError(f"bad {cmd.name} body: {exc}") from None


class FrameDecoder:
    """Sans-I/O: feed bytes, get whole frames back; partial frames wait for more bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Cmd, Any]]:
        self._buf += data
        frames: list[tuple[Cmd, Any]] = []
        pos, end = 0, len(self._buf)
        while end - pos >= HEADER.size:
            size, cmd = HEADER.unpack_from(self._buf, pos)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes")
            if end - pos - HEADER.size < size:
                break
            start = pos + HEADER.size
            frames.append(decode_body(cmd, bytes(self._buf[start:start + size])))
            pos = start + size
        del self._buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


class Channel:
    """A connected stream socket carrying frames: one reader thread, many senders (send is locked).

    Reads are buffered (one recv usually brings several frames, e.g. a FREE with its command)."""

    __slots__ = ("sock", "_lock", "_decoder", "_ready")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._decoder = FrameDecoder()
        self._ready: list[tuple[Cmd, Any]] = []

    def send(self, cmd: Cmd, meta: Any, before: tuple[Cmd, Any] | None = None) -> None:
        """Send one frame, optionally preceded by another in the same write (one syscall)."""
        frame = encode(cmd, meta) if before is None else encode(*before) + encode(cmd, meta)
        with self._lock:
            self.sock.sendall(frame)

    def recv(self) -> tuple[Cmd, Any] | None:
        """The next frame, or None at a clean end of stream (the peer is gone)."""
        while not self._ready:
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                if self._decoder.pending:
                    raise ProtocolError("end of stream inside a frame")
                return None
            self._ready = self._decoder.feed(data)
            self._ready.reverse()  # pop() from the end keeps arrival order
        return self._ready.pop()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self.sock.close()
