from triton_asyncio.codec.status import error_body, grpc_status, http_status
from triton_asyncio.errors import ErrorCode


def test_http_table():
    assert http_status(ErrorCode.INTERNAL) == 500
    assert http_status(ErrorCode.NOT_FOUND) == 404
    assert http_status(ErrorCode.UNAVAILABLE) == 503
    assert http_status(ErrorCode.UNSUPPORTED) == 501
    for code in (ErrorCode.UNKNOWN, ErrorCode.INVALID_ARG, ErrorCode.ALREADY_EXISTS, ErrorCode.CANCELLED):
        assert http_status(code) == 400


def test_grpc_table():
    expected = {ErrorCode.UNKNOWN: 2, ErrorCode.INTERNAL: 13, ErrorCode.NOT_FOUND: 5,
                ErrorCode.INVALID_ARG: 3, ErrorCode.UNAVAILABLE: 14, ErrorCode.UNSUPPORTED: 12,
                ErrorCode.ALREADY_EXISTS: 6, ErrorCode.CANCELLED: 1}
    assert {c: grpc_status(c) for c in ErrorCode} == expected


def test_error_body_is_compact_and_unescaped():
    assert error_body("Not Found") == b'{"error":"Not Found"}'
    assert error_body("bad 'x' \"q\"") == b'{"error":"bad \'x\' \\"q\\""}'
    assert error_body("caf\u00e9") == '{"error":"café"}'.encode()
