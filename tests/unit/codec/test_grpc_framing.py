"""gRPC message framing, grpc-timeout and grpc-message encoding over byte literals."""
from __future__ import annotations

import gzip
import zlib

import pytest

from triton_asyncio.codec.grpc_framing import (
    FramingError,
    MessageDecoder,
    decode_grpc_message,
    encode_grpc_message,
    encode_message,
    parse_timeout,
)
from triton_asyncio.codec.status import GrpcStatus

A = b"\x00\x00\x00\x00\x03abc"
EMPTY = b"\x00\x00\x00\x00\x00"
B = b"\x00\x00\x00\x00\x05hello"
STREAM = A + EMPTY + B


def frame(payload: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(payload).to_bytes(4, "big") + payload


def feed_all(decoder: MessageDecoder, chunks) -> list[bytes]:
    return [bytes(m) for chunk in chunks for m in decoder.feed(chunk)]


# -- reassembly ----------------------------------------------------------------------------------
def test_whole_messages_in_one_chunk_are_views_into_it():
    data = STREAM
    messages = MessageDecoder(100).feed(data)
    assert [bytes(m) for m in messages] == [b"abc", b"", b"hello"]
    assert all(isinstance(m, memoryview) and m.obj is data for m in messages)


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_boundary(cut):
    decoder = MessageDecoder(100)
    assert feed_all(decoder, [STREAM[:cut], STREAM[cut:]]) == [b"abc", b"", b"hello"]
    assert decoder.at_message_boundary and decoder.pending == 0


def test_one_byte_at_a_time():
    decoder = MessageDecoder(100)
    out = []
    for i in range(len(STREAM)):
        out += [bytes(m) for m in decoder.feed(STREAM[i:i + 1])]
        if i == 2:
            assert decoder.pending == 3 and not decoder.at_message_boundary
    assert out == [b"abc", b"", b"hello"]
    assert decoder.at_message_boundary


def test_message_spanning_many_chunks_is_copied_once_into_its_own_buffer():
    payload = bytes(range(256)) * 40
    data = frame(payload)
    decoder = MessageDecoder(1 << 20)
    chunks = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    out = []
    for chunk in chunks[:-1]:
        out += decoder.feed(chunk)
        assert decoder.pending > 0
    out += decoder.feed(chunks[-1])
    assert len(out) == 1 and isinstance(out[0], bytearray) and out[0] == payload
    assert decoder.feed(b"") == []


def test_memoryview_input():
    assert [bytes(m) for m in MessageDecoder(100).feed(memoryview(STREAM))] == [b"abc", b"", b"hello"]


# -- compression ---------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_messages(encoding, pack):
    payload = b"tensor" * 100
    data = frame(pack(payload), 1) + A
    for cut in (3, 20, len(data) - 2):
        decoder = MessageDecoder(1 << 20, encoding)
        assert feed_all(decoder, [data[:cut], data[cut:]]) == [payload, b"abc"]


@pytest.mark.parametrize("encoding", [None, "", "identity"])
def test_compressed_flag_without_encoding_is_internal(encoding):
    with pytest.raises(FramingError) as e:
        MessageDecoder(100, encoding).feed(frame(zlib.compress(b"x"), 1))
    assert e.value.status is GrpcStatus.INTERNAL and "without grpc-encoding" in e.value.message


def test_unknown_encoding_is_unimplemented():
    with pytest.raises(FramingError) as e:
        MessageDecoder(100, "snappy")
    assert e.value.status is GrpcStatus.UNIMPLEMENTED and "snappy" in e.value.message


def test_corrupt_compressed_data_is_internal():
    with pytest.raises(FramingError) as e:
        MessageDecoder(100, "gzip").feed(frame(b"not gzip", 1))
    assert e.value.status is GrpcStatus.INTERNAL


def test_bad_flag_byte():
    with pytest.raises(FramingError) as e:
        MessageDecoder(100).feed(b"\x02\x00\x00\x00\x00")
    assert e.value.status is GrpcStatus.INTERNAL


# -- size limit ----------------------------------------------------------------------------------
def test_oversized_is_rejected_at_the_prefix():
    with pytest.raises(FramingError) as e:
        MessageDecoder(4).feed(B[:5])  # the body need not arrive
    assert e.value.status is GrpcStatus.RESOURCE_EXHAUSTED
    assert e.value.message == "Received message larger than max (5 vs. 4)"


def test_oversized_prefix_split_across_chunks():
    decoder = MessageDecoder(4)
    decoder.feed(B[:2])
    with pytest.raises(FramingError, match=r"\(5 vs\. 4\)"):
        decoder.feed(B[2:])


def test_exact_max_is_fine():
    assert feed_all(MessageDecoder(5), [B]) == [b"hello"]


def test_decompressed_size_is_limited_too():
    with pytest.raises(FramingError) as e:
        MessageDecoder(100, "gzip").feed(frame(gzip.compress(b"x" * 1000), 1))
    assert e.value.status is GrpcStatus.RESOURCE_EXHAUSTED


# -- encoding ------------------------------------------------------------------------------------
def test_encode_message_is_prefix_plus_untouched_payload():
    payload = memoryview(b"hello")
    prefix, body = encode_message(payload)
    assert prefix == b"\x00\x00\x00\x00\x05" and body is payload


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_encode_compressed_round_trip(encoding):
    payload = b"abc" * 1000
    data = b"".join(encode_message(payload, encoding))
    assert data[0] == 1 and len(data) < len(payload)
    assert feed_all(MessageDecoder(1 << 20, encoding), [data]) == [payload]


def test_encode_incompressible_stays_uncompressed():
    payload = bytes(range(7))
    assert encode_message(payload, "gzip") == [b"\x00\x00\x00\x00\x07", payload]


# -- grpc-timeout --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [
    (b"2H", 7200.0), (b"3M", 180.0), (b"5S", 5.0), (b"250m", 0.25), (b"100u", 1e-4), (b"1000n", 1e-6),
    (b"99999999S", 99999999.0), (b"0m", 0.0),
])
def test_timeout_units(value, seconds):
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"5", b"5s", b"5x", b"-5S", b"1.5S", b"123456789S", b" 5S"])
def test_malformed_timeout_is_none(value):
    assert parse_timeout(value) is None


# -- grpc-message percent-encoding -------------------------------------------------------------------
@pytest.mark.parametrize("text, wire", [
    ("plain text ok", b"plain text ok"),
    ("100%", b"100%25"),
    ("a\nb\tc", b"a%0Ab%09c"),
    ("modèle ✓", b"mod%C3%A8le %E2%9C%93"),
    ("", b""),
])
def test_percent_encoding(text, wire):
    assert encode_grpc_message(text) == wire
    assert decode_grpc_message(wire) == text


def test_percent_decoding_is_lenient():
    assert decode_grpc_message(b"50%") == "50%"
    assert decode_grpc_message(b"%zz%4") == "%zz%4"
    assert decode_grpc_message(b"%41%42") == "AB"
