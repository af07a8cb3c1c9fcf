"""A connection-cutting TCP proxy for adversity tests (asyncpg's TCPFuzzingProxy, reshaped).

It listens on 127.0.0.1, opens one upstream connection per client connection and pumps bytes both
ways on its own event loop thread. Per connection it can cut both sides after N bytes client to
server (`cut_up`) or server to client (`cut_down`), and trickle client-to-server bytes one at a time
(`trickle`, seconds between bytes). Settings are read when a connection is accepted, so a test may
change them between connections.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


@dataclass
class ProxyStats:
    accepted: int = 0
    cut: int = 0  # connections closed by the proxy after a byte budget ran out
    finished: int = 0  # connections fully torn down, for whatever reason


class CuttingProxy:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.cut_up: int | None = None
        self.cut_down: int | None = None
        self.trickle: float | None = None
        self.stats = ProxyStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    # -- life cycle (called from the test's thread) ------------------------------------------
    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def configure(self, *, cut_up: int | None = None, cut_down: int | None = None,
                  trickle: float | None = None) -> None:
        self.cut_up, self.cut_down, self.trickle = cut_up, cut_down, trickle

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection (on the proxy's loop) -------------------------------------------------
    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        cut_up, cut_down, trickle = self.cut_up, self.cut_down, self.trickle
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.close()
            self.stats.finished += 1
            return
        pumps = {asyncio.ensure_future(self._pump(client_r, server_w, cut_up, trickle)),
                 asyncio.ensure_future(self._pump(server_r, client_w, cut_down, None))}
        try:
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if any(not t.cancelled() and t.exception() is None and t.result() for t in done):
                self.stats.cut += 1
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
            self.stats.finished += 1

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None,
                    trickle: float | None) -> bool:
        """Copy until EOF (False) or until `budget` bytes have gone through (True: cut)."""
        while True:
            data = await reader.read(65536)
            if not data:
                return False
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            if trickle is None:
                writer.write(data)
                await writer.drain()
            else:
                for i in range(len(data)):
                    writer.write(data[i:i + 1])
                    await writer.drain()
                    await asyncio.sleep(trickle)
            if budget == 0:
                return True
