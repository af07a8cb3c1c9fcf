"""Bad input on the real gRPC port, with raw sockets and an h2 client: each bad call gets its status or
connection error, and the connection (or, for a broken connection, the server) keeps serving."""
from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import tritonclient.grpc as grpcclient

from triton_asyncio.pb import grpc_service_pb2 as pb

LIVE = b"/inference.GRPCInferenceService/ServerLive"
INFER = b"/inference.GRPCInferenceService/ModelInfer"


class Client:
    """A minimal blocking gRPC client over h2, to send what real clients never would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, path: bytes) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                     (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
                                     (b"te", b"trailers")])
        self._flush()
        return sid

    def send(self, sid: int, data: bytes, end: bool = True) -> None:
        self.conn.send_data(sid, data, end_stream=end)
        self._flush()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        self._flush()

    def result(self, sid: int) -> tuple[dict, bytes]:
        """The call's headers and trailers merged, and its body."""
        headers: dict = {}
        body = b""
        while True:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            for event in self.conn.receive_data(data):
                if getattr(event, "stream_id", None) != sid:
                    continue
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers.update(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded):
                    self._flush()
                    return headers, body
            self._flush()

    def close(self) -> None:
        self.sock.close()


def _frame(message: bytes, compressed: bool = False) -> bytes:
    return bytes([int(compressed)]) + len(message).to_bytes(4, "big") + message


def _live(server) -> bool:
    return grpcclient.InferenceServerClient(server.grpc_url).is_server_live()


def test_garbage_instead_of_the_preface_closes_that_connection_only(server):
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert b"\x07" in received[:64] or received == b""  # a GOAWAY frame (type 7), then the close
    assert _live(server)


def test_unknown_method_compressed_flag_and_reset_on_one_connection(server):
    client = Client(server.grpc_port)
    try:
        sid = client.open(b"/inference.GRPCInferenceService/NoSuchMethod")
        client.send(sid, _frame(b""))
        headers, _ = client.result(sid)
        assert headers[b"grpc-status"] == b"12"

        sid = client.open(INFER)  # compressed flag, but no grpc-encoding on the call
        client.send(sid, _frame(pb.ModelInferRequest(model_name="simple").SerializeToString(), compressed=True))
        headers, _ = client.result(sid)
        assert headers[b"grpc-status"] == b"13"

        sid = client.open(INFER)  # a prefix promising more bytes than ever come, then a reset
        client.send(sid, b"\x00\x00\x01\x00\x00" + b"x" * 10, end=False)
        client.reset(sid)

        sid = client.open(INFER)  # bytes that are not a ModelInferRequest
        client.send(sid, _frame(b"\xff\xff\xff"))
        headers, _ = client.result(sid)
        assert headers[b"grpc-status"] != b"0"

        sid = client.open(LIVE)  # the same connection still serves
        client.send(sid, _frame(b""))
        headers, body = client.result(sid)
        assert headers[b"grpc-status"] == b"0"
        assert pb.ServerLiveResponse.FromString(body[5:]).live
    finally:
        client.close()
    assert _live(server)


def test_stream_ending_inside_a_message_is_an_error(server):
    client = Client(server.grpc_port)
    try:
        sid = client.open(LIVE)
        client.send(sid, b"\x00\x00\x00\x00\x10" + b"ab")  # 16 bytes promised, 2 sent, then END_STREAM
        headers, _ = client.result(sid)
        assert headers[b"grpc-status"] not in (None, b"0")
    finally:
        client.close()
