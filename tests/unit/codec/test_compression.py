import gzip
import zlib

import pytest

from triton_asyncio.codec.compression import choose_encoding, compress_response, decompress
from triton_asyncio.errors import ErrorCode, TritonError

BODY = b'{"inputs":[]}' * 50


@pytest.mark.parametrize("encoding", [None, b"", b"identity", "identity"])
def test_identity_is_untouched(encoding):
    assert decompress(BODY, encoding, 1 << 20) is BODY


def test_gzip_and_deflate_as_tritonclient_sends_them():
    assert decompress(gzip.compress(BODY), b"gzip", 1 << 20) == BODY
    assert decompress(zlib.compress(BODY), b"deflate", 1 << 20) == BODY
    assert decompress(memoryview(zlib.compress(BODY)), "deflate", 1 << 20) == BODY


def test_unsupported_encoding():
    with pytest.raises(TritonError) as e:
        decompress(BODY, b"br", 1 << 20)
    assert e.value.code is ErrorCode.UNSUPPORTED and e.value.message == "Unsupported compression type"
    with pytest.raises(TritonError):
        decompress(BODY, b"GZIP", 1 << 20)  # Triton compares exactly


def test_decompressed_size_limit():
    with pytest.raises(TritonError) as e:
        decompress(gzip.compress(BODY), b"gzip", len(BODY) - 1)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "exceeds the maximum allowed input size of" in e.value.message
    assert decompress(gzip.compress(BODY), b"gzip", len(BODY)) == BODY


def test_corrupt_body_is_an_error():
    with pytest.raises(TritonError) as e:
        decompress(b"not gzip at all", b"gzip", 1 << 20)
    assert e.value.code is ErrorCode.INTERNAL


@pytest.mark.parametrize("header,expected", [
    ("gzip", "gzip"), ("deflate", "deflate"), ("identity", "identity"), ("br", "identity"),
    ("gzip, deflate", "gzip"), ("deflate, gzip", "deflate"),
    ("gzip;q=0.5, deflate;q=0.8", "deflate"), ("gzip;q=0.8, deflate;q=0.8", "gzip"),
    ("identity;q=1, gzip;q=0.9", "identity"), ("gzip;q=0", "identity"),
    ("gzip;q=abc, deflate;q=0.1", "deflate"), ("  ", "identity"), (";q=1", "identity"),
    ("gzip ;q=1", "identity"), ("*", "identity"), (b"gzip", "gzip"), ("gzip;q=1e-1x", "gzip"),
])
def test_choose_encoding(header, expected):
    assert choose_encoding(header) == expected


def test_compress_response_covers_all_chunks():
    chunks = [b'{"a":1}', memoryview(b"\x01\x02\x03\x04")]
    headers: list = []
    out = compress_response(chunks, b"gzip, deflate", headers)
    assert headers == [(b"content-encoding", b"gzip")]
    assert gzip.decompress(b"".join(out)) == b'{"a":1}\x01\x02\x03\x04'
    headers = []
    out = compress_response(chunks, b"deflate", headers)
    assert zlib.decompress(b"".join(out)) == b'{"a":1}\x01\x02\x03\x04'
    headers = []
    assert compress_response(chunks, b"identity", headers) is chunks and headers == []
