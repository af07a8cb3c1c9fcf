"""Fuzz h11 + HttpProtocol with mutated and arbitrarily chunked byte streams over a fake transport."""
from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from triton_asyncio.transport.http.protocol import HttpProtocol

from . import seeds, targets
from .strategies import budget, cuts, mutated

REQUESTS = seeds.http_requests()


@st.composite
def streams(draw) -> list[bytes]:
    """Several (mutated) requests back to back, cut at arbitrary points."""
    data = b"".join(draw(st.lists(st.one_of(st.sampled_from(REQUESTS), mutated(REQUESTS)), min_size=1,
                                  max_size=3)))
    bounds = [0, *sorted({c for c in draw(cuts()) if c < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@budget(200)
@given(streams(), st.booleans())
@example([b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"], False)
@example([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3], True)
@example([b"\x00\xff garbage\r\n\r\n"], False)
@example([b"HEAD /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"], False)
def test_mutated_streams(chunks, asynchronous):
    targets.check_http(chunks, asynchronous)


@budget(80)
@given(st.binary(max_size=200), st.booleans())
def test_garbage_streams(data, asynchronous):
    targets.check_http([data], asynchronous)


def test_content_length_does_not_reserve_the_claimed_size():
    """Regression: a head declaring a 2 GiB body used to allocate all of it on the first body byte."""
    protocol = HttpProtocol(lambda request: None, max_body_size=2**31)  # type: ignore[arg-type,return-value]
    transport = targets.FakeTransport()

    def run() -> None:
        async def main() -> None:
            protocol.connection_made(transport)
            protocol.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 2000000000\r\n\r\nabc")
            protocol.connection_lost(None)
        targets.run_async(main())

    targets.bounded_alloc(100, run)
