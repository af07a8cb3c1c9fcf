"""How code on a backend's thread runs inference requests on the server (Python-backend BLS).

Rules: backends sit below the server, so they get this handle instead of the server itself; the
server binds it to its event loop once that loop runs. Calls block the calling thread and must
never be made from the event loop's own thread.
"""
from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..errors import ErrorCode, TritonError, unavailable
from .request import InferenceRequest
from .response import InferenceResponse

InferFn = Callable[[InferenceRequest], Awaitable[InferenceResponse]]
StreamFn = Callable[[InferenceRequest], AsyncIterator[tuple[InferenceResponse | None, bool]]]
# Schedules a coroutine on the server's loop from another thread (asyncio.run_coroutine_threadsafe).
SubmitFn = Callable[[Coroutine[Any, Any, Any]], Future]

_END = object()


class InferenceCaller:
    __slots__ = ("_submit", "_infer", "_stream")

    def __init__(self) -> None:
        self._submit: SubmitFn | None = None
        self._infer: InferFn | None = None
        self._stream: StreamFn | None = None

    def bind(self, submit: SubmitFn | None, infer: InferFn | None, stream: StreamFn | None) -> None:
        """Bind to the serving loop; bind(None, None, None) when it stops."""
        self._submit, self._infer, self._stream = submit, infer, stream

    def _bound(self) -> SubmitFn:
        if self._submit is None:
            raise unavailable("the server is not serving requests")
        return self._submit

    def infer(self, request: InferenceRequest, timeout_s: float | None = None) -> InferenceResponse:
        """Run one request on any loaded model (a non-decoupled one); raises TritonError."""
        future = self._bound()(self._infer(request))  # type: ignore[misc]
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TritonError(ErrorCode.UNAVAILABLE, "Request timeout expired") from None

    def infer_stream(self, request: InferenceRequest) -> Iterator[tuple[InferenceResponse | None, bool]]:
        """Run one request on any model, decoupled ones included: yields (response, final) pairs
        until the final one. An error ends the stream by raising TritonError."""
        submit = self._bound()
        items: queue.SimpleQueue = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for item in self._stream(request):  # type: ignore[misc]
                    items.put(item)
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread
                items.put(e)
            finally:
                items.put(_END)

        future = submit(pump())
        try:
            while True:
                item = items.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, TritonError):
                        raise item
                    raise TritonError(ErrorCode.INTERNAL, f"{type(item).__name__}: {item}")
                yield item
        finally:
            future.cancel()
