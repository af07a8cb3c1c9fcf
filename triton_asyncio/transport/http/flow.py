"""Back-pressure for one HTTP connection (uvicorn's FlowControl shape).

Rules: this module owns the read and write pause flags, the bytes held while the protocol cannot
parse (a request is in the app, or the peer is not reading our responses), and the drain Event.
It knows nothing of HTTP; the protocol decides when to hold and when to release.
"""
from __future__ import annotations

import asyncio

HIGH_WATER = 64 * 1024  # held bytes above which we stop reading the socket


class FlowControl:
    __slots__ = ("_transport", "_held", "_held_size", "_writable", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._held_size = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self.read_paused = False
        self.write_paused = False

    # -- input held while the protocol is busy --------------------------------------------------
    def hold(self, data: bytes) -> None:
        """Keep `data` for later; stop reading once more than HIGH_WATER bytes wait."""
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > HIGH_WATER:
            self.pause_reading()

    def release(self) -> list[bytes]:
        """Hand back everything held, in arrival order, and read the socket again."""
        held = self._held
        if held:
            self._held = []
            self._held_size = 0
        self.resume_reading()
        return held

    @property
    def holding(self) -> bool:
        return bool(self._held)

    # -- read side -----------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    # -- write side (called from the transport's pause_writing/resume_writing) ----------------
    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self._writable.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            self._writable.set()

    async def drain(self) -> None:
        """Wait until the transport accepts writes again."""
        await self._writable.wait()
