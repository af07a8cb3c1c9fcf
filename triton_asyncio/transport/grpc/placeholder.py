"""A gRPC listener that answers every RPC with UNIMPLEMENTED until the gRPC frontend lands.

Rules: speaks just enough HTTP/2 (via h2) for a gRPC client to get a clean status: each stream
gets response headers and trailers with grpc-status 12. Replaced by protocol.py/service.py.
"""
from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions

_UNIMPLEMENTED = b"12"


class UnimplementedGrpcProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._reply(event.stream_id, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def _reply(self, stream_id: int, headers) -> None:
        path = dict(headers).get(b":path", b"")
        message = b"Method not implemented yet by triton_asyncio: " + path
        self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                           ("grpc-status", _UNIMPLEMENTED), ("grpc-message", message)],
                               end_stream=True)
