"""Fuzz targets: one checker per parser we own, each taking plain values and asserting its invariants.

Rules: a checker raises AssertionError (or lets an unexpected exception out) only for a real bug;
inputs the parser rightly rejects end in TritonError / FramingError / an HTTP 4xx, which is fine.
The hypothesis tests in this package build structured inputs for them; scripts/fuzz.py drives the
`*_bytes` entry points from atheris' raw bytes. No sockets: HTTP runs over a fake transport.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import tracemalloc
from types import SimpleNamespace

import h11

from triton_asyncio.codec import grpc_messages, kserve_json, routes, shm_json, shm_params
from triton_asyncio.codec.binary_data import decode_raw_infer
from triton_asyncio.codec.grpc_framing import FramingError, MessageDecoder
from triton_asyncio.errors import TritonError
from triton_asyncio.memory.shm_registry import ShmRegistry
from triton_asyncio.pb import grpc_service_pb2 as pb
from triton_asyncio.repository import config as model_config
from triton_asyncio.repository.normalize import TensorSpec, model_spec, normalize_and_validate
from triton_asyncio.transport.http.messages import HttpRequest, HttpResponse
from triton_asyncio.transport.http.protocol import HttpProtocol

MAX_INPUT = 1 << 20  # the codecs' max_input_size under fuzzing: small, so size checks are reachable
# Decoding may build Python objects for every JSON leaf (~100 bytes each for a 2-byte "1,"), but a
# tensor sized by a hostile `shape` must never be allocated: peak memory stays proportional to input.
ALLOC_PER_BYTE = 200
ALLOC_SLACK = 2 << 20


def bounded_alloc(size: int, run) -> None:
    """Run `run()` and assert its peak traced allocation is proportional to the input size."""
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        run()
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if not already:
            tracemalloc.stop()
    assert peak <= ALLOC_PER_BYTE * size + ALLOC_SLACK, f"allocated {peak} bytes for a {size}-byte input"


# -- KServe JSON + binary tensors ----------------------------------------------------------------
def check_kserve(body: bytes, header_length: int | None, *, trace_alloc: bool = True) -> None:
    """decode_infer: TritonError or a request whose inputs are no bigger than the body."""
    def run() -> None:
        try:
            request = kserve_json.decode_infer(body, header_length, "m", 1, MAX_INPUT)
        except TritonError:
            return
        for tensor in request.inputs.values():
            size = tensor.raw_size()
            assert size <= len(body) * 8 + 64, f"input {tensor.name!r} of {size} bytes from {len(body)}"
    if trace_alloc:
        bounded_alloc(len(body), run)
    else:
        run()


def check_raw_infer(body: bytes, datatype: str, dims: tuple[int, ...], max_batch_size: int) -> None:
    """decode_raw_infer (IHCL 0): TritonError, or one input whose bytes are exactly the body."""
    spec = SimpleNamespace(inputs={"x": TensorSpec("x", datatype, dims)}, max_batch_size=max_batch_size)
    try:
        request = decode_raw_infer(body, "m", 1, spec, MAX_INPUT)
    except TritonError:
        return
    (tensor,) = request.inputs.values()
    assert tensor.raw_size() == len(body) + (4 if datatype == "BYTES" else 0)


def kserve_bytes(data: bytes) -> None:
    """atheris: the first two bytes pick the IHCL (0xFFFF: none), the rest is the body."""
    if len(data) < 2:
        return
    ihcl = int.from_bytes(data[:2], "big")
    check_kserve(data[2:], None if ihcl == 0xFFFF else ihcl, trace_alloc=False)


# -- gRPC framing and messages -----------------------------------------------------------------
def check_framing(stream: bytes, cuts: list[int], max_size: int, encoding: str | None) -> list[bytes]:
    """Feed `stream` cut at `cuts`: FramingError or messages; held bytes never exceed what was fed."""
    decoder = MessageDecoder(max_size, encoding)
    out: list[bytes] = []
    fed = 0
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(stream)), len(stream)]
    try:
        for start, stop in zip(bounds, bounds[1:], strict=False):
            out += [bytes(m) for m in decoder.feed(stream[start:stop])]
            fed += stop - start
            assert decoder.pending <= fed, "decoder holds more than it was fed"
    except FramingError:
        return out
    for message in out:
        assert len(message) <= max_size
    return out


def framing_bytes(data: bytes) -> None:
    """atheris: byte 0 picks the chunk size, the rest is the stream (possibly corrupt)."""
    if not data:
        return
    step = data[0] % 17 + 1
    stream = data[1:]
    check_framing(stream, list(range(step, len(stream), step)), 1 << 16, None)


def check_grpc_infer(buffer: bytes) -> None:
    """parse_infer + decode_infer on any bytes: TritonError only."""
    try:
        grpc_messages.decode_infer(grpc_messages.parse_infer(buffer))
    except TritonError:
        return


def grpc_infer_bytes(data: bytes) -> None:
    check_grpc_infer(data)


def check_grpc_request(msg: pb.ModelInferRequest) -> None:
    check_grpc_infer(msg.SerializeToString())


# -- config.pbtxt ---------------------------------------------------------------------------------
def check_config(text: bytes) -> None:
    """parse, normalize, validate, build the hot-path spec, render JSON: TritonError only."""
    try:
        config = model_config.parse_config(text)
        model_config.config_to_json(config)
        normalize_and_validate(config, name="m")
        model_spec(config)
        model_config.config_json_body(config)
    except TritonError:
        return


def config_bytes(data: bytes) -> None:
    check_config(data)


# -- shared memory ---------------------------------------------------------------------------------
REGION_FILE_SIZE = 64


class ShmFixture:
    """A registry with one system region over a temp file whose byte i is i % 251."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fuzz_shm_")
        self.content = bytes(i % 251 for i in range(REGION_FILE_SIZE))
        with open(os.path.join(self.dir, "key"), "wb") as f:
            f.write(self.content)
        self.registry = ShmRegistry(enabled=True, shm_dir=self.dir)

    def check(self, reg_offset: int, reg_size: int, offset: int, size: int) -> None:
        """register then view: TritonError, or exactly the bytes [offset, offset+size) of the region."""
        registry = self.registry
        registry.unregister("system")
        try:
            registry.register_system("r", "/key", reg_offset, reg_size)
        except TritonError:
            assert not registry.status("system"), "a failed register left a region behind"
            return
        assert 0 <= reg_offset and reg_offset + reg_size <= REGION_FILE_SIZE, "registered out of bounds"
        try:
            view = registry.view("r", offset, size)
        except TritonError:
            return
        assert 0 <= offset and 0 <= size and offset + size <= reg_size, (offset, size, reg_size)
        expected = self.content[reg_offset + offset:reg_offset + offset + size]
        assert len(view) == size and bytes(view) == expected


def check_shm_params(params: dict) -> None:
    """shm_ref: TritonError, None, or a ShmRef with non-negative 64-bit offset and size."""
    try:
        ref = shm_params.shm_ref("t", params)
    except TritonError:
        return
    if ref is not None:
        assert 0 <= ref.offset < 2**64 and 0 <= ref.byte_size < 2**64


def check_shm_json(body: bytes) -> None:
    """The register bodies: TritonError, or values the registry can take."""
    for parse in (shm_json.parse_system_register, shm_json.parse_cuda_register):
        try:
            values = parse(body)
        except TritonError:
            continue
        assert all(0 <= v < 2**64 for v in values[1:] if parse is shm_json.parse_system_register)


def shm_json_bytes(data: bytes) -> None:
    check_shm_json(data)


# -- HTTP/1.1: h11 + HttpProtocol over a fake transport ----------------------------------------
class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; records close."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


_SEEN_METHODS: list[bytes] = []  # the methods the app was called with, in order (HEAD: no body)


def _codec_app(request: HttpRequest) -> HttpResponse:
    """Routes, then the infer codec on POST .../infer; anything but TritonError/RouteError is a bug
    that the protocol would turn into a 500, which the HTTP checker rejects."""
    _SEEN_METHODS.append(request.method)
    path = request.target.split(b"?", 1)[0].decode("latin-1")
    try:
        endpoint, _ = routes.route(request.method, path)
        if endpoint is routes.Endpoint.INFER:
            ihcl = request.header(b"inference-header-content-length")
            length = int(ihcl) if ihcl is not None and ihcl.isdigit() else None
            kserve_json.decode_infer(request.body, length, "m", 1, MAX_INPUT)
    except routes.RouteError as exc:
        return HttpResponse(exc.status, [], [exc.message.encode()])
    except TritonError as exc:
        return HttpResponse(400, [], [json.dumps({"error": exc.message}).encode()])
    return HttpResponse(200, [(b"content-type", b"text/plain")], [b"%d" % len(request.body)])


async def _async_codec_app(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return _codec_app(request)


_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [^\r\n]*\Z")
_HEADER = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n]*\Z")


def parse_responses(out: bytes, methods: list[bytes] | None = None) -> list[int]:
    """Statuses of the responses in `out`; asserts each is well-formed and Content-Length framed.
    `methods`: the requests' methods in order, so that an answer to HEAD is read without a body."""
    methods = _SEEN_METHODS if methods is None else methods
    statuses: list[int] = []
    data = bytes(out)
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head {head!r}"
        lines = head.split(b"\r\n")
        match = _STATUS_LINE.match(lines[0])
        assert match, f"bad status line {lines[0]!r}"
        status = int(match.group(1))
        headers = {}
        for line in lines[1:]:
            assert _HEADER.match(line), f"bad header line {line!r}"
            name, value = line.split(b": ", 1)
            headers[name.lower()] = value
        final = [s for s in statuses if s >= 200]
        head_request = status >= 200 and len(final) < len(methods) and methods[len(final)] == b"HEAD"
        if status >= 200 and status not in (204, 304) and not head_request:
            assert b"content-length" in headers, f"no content-length: {head!r}"
            size = int(headers[b"content-length"])
            assert len(data) >= size, "response body shorter than its content-length"
            data = data[size:]
        statuses.append(status)
    return statuses


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def run_async(coro) -> None:
    """Run `coro` on one loop kept for the whole process (a new loop per example is slow)."""
    _loop().run_until_complete(coro)


def check_http(chunks: list[bytes], asynchronous: bool = False) -> None:
    """Feed `chunks`, then check: only well-formed responses, never a 500; then the connection is
    either closed or still usable (a fresh GET gets a 200); after EOF it is always closed."""
    run_async(_check_http(chunks, asynchronous))


async def _settle(protocol: HttpProtocol) -> None:
    for _ in range(20):  # an async app answers after a loop turn or two
        if protocol._task is None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the app task never finished")


async def _check_http(chunks: list[bytes], asynchronous: bool) -> None:
    _SEEN_METHODS.clear()
    protocol = HttpProtocol(_async_codec_app if asynchronous else _codec_app, max_input_size=MAX_INPUT,
                            max_body_size=MAX_INPUT)
    transport = FakeTransport()
    protocol.connection_made(transport)
    try:
        for chunk in chunks:
            protocol.data_received(chunk)
            await _settle(protocol)
        statuses = parse_responses(transport.out)
        assert 500 not in statuses, f"an exception escaped the codec: {bytes(transport.out)!r}"
        conn = protocol._conn
        if not transport.closed and conn.their_state is h11.IDLE and not conn.trailing_data[0]:
            before = len(statuses)
            protocol.data_received(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            await _settle(protocol)
            after = parse_responses(transport.out)
            assert after[before:] == [200] or (transport.closed and after[before:] == []), after
        if not transport.closed:
            protocol.eof_received()
            await _settle(protocol)
            parse_responses(transport.out)
            assert transport.closed, "connection left open after EOF"
    finally:
        protocol.connection_lost(None)


def http_bytes(data: bytes) -> None:
    """atheris: byte 0 picks the chunk size and the app kind, the rest is the stream."""
    if not data:
        return
    step = data[0] % 31 + 1
    stream = data[1:]
    check_http([stream[i:i + step] for i in range(0, len(stream), step)], bool(data[0] & 0x80))


TARGETS = {
    "http": http_bytes,
    "kserve": kserve_bytes,
    "grpc_framing": framing_bytes,
    "grpc_infer": grpc_infer_bytes,
    "config": config_bytes,
    "shm_json": shm_json_bytes,
}
