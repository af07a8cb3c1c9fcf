"""Shortcuts past h2's costly paths for a plain unary call, leaving h2's state as h2 would.

Rules: h2 owns every connection and stream state; this module does, for the plain cases only,
what h2 would do, more cheaply, and answers None or False for anything else so that the caller
takes h2's own path. What it keeps in step with h2 (4.x):
- stream state machines: received frames go through h2's own stream methods; a whole response
  sets what h2's transitions would set (tests compare the two); connection state: only
  SERVER_OPEN, where the inputs used here change nothing;
- flow-control windows, both directions, on the connection and the stream;
- HPACK: a response block is reused only while the encoder's dynamic table holds the same
  entries, and only when every field is indexed, which changes nothing, so the bytes are the
  ones h2's encoder would write; a received block is decoded through h2's decoder (or found in
  a cache of blocks whose decoding left the table as it was);
- frames: 9-byte header, no padding or priority, header blocks far below the smallest allowed
  frame size.
Nothing here knows gRPC or asyncio; connection.py decides when to try a shortcut.
"""
from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.exceptions
import h2.stream
from hpack.hpack import encode_integer

_HEAD = struct.Struct(">HBBBL")  # a frame header, as hyperframe packs it
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN
_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
_DATA, _HEADERS = 0x0, 0x1
_END_STREAM, _END_HEADERS = 0x1, 0x4
_CLOSED = h2.stream.StreamState.CLOSED
_CLOSED_BY_SEND_END_STREAM = h2.stream.StreamClosedBy.SEND_END_STREAM
_SID = struct.Struct(">L")
_STALE = object()


def frame_head(length: int, kind: int, flags: int, sid: int) -> bytes:
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, sid)


class ConstantBlocks:
    """HPACK blocks of constant header lists, exactly as h2's encoder would write them now.

    A list whose every field is in the table (static or dynamic) encodes as indexed fields, which
    leave the table as it is; such a block stays right while the dynamic table holds the same
    entries. The table only grows at the front (a new tuple each time) and shrinks at the back,
    so its front entry (held here: no other object can take its id) and its length identify its
    contents. `get()` is None while some field is not in the table (h2 must encode, and add it)
    or a table size change is pending (h2 must announce it); else, per list, the HEADERS frame
    (END_HEADERS, plus END_STREAM for the last list) as (head up to the stream id, block)."""

    __slots__ = ("_table", "_lists", "_front", "_length", "_frames")

    def __init__(self, encoder, header_lists: tuple[list[tuple[bytes, bytes]], ...]) -> None:
        self._table = encoder.header_table
        self._lists = header_lists
        self._front: object = _STALE
        self._length = -1
        self._frames: tuple[tuple[bytes, bytes], ...] | None = None

    def get(self) -> tuple[tuple[bytes, bytes], ...] | None:
        table = self._table
        entries = table.dynamic_entries
        if ((entries[0] if entries else None) is self._front and len(entries) == self._length
                and not table.resized):
            return self._frames
        return self._refresh()

    def _refresh(self) -> tuple[tuple[bytes, bytes], ...] | None:
        table = self._table
        if table.resized:
            return None
        entries = table.dynamic_entries
        self._front = entries[0] if entries else None
        self._length = len(entries)
        self._frames = None
        frames = []
        for n, headers in enumerate(self._lists, 1):
            block = bytearray()
            for name, value in headers:
                match = table.search(name, value)
                if match is None or match[2] is None:
                    return None
                field = encode_integer(match[0], 7)
                field[0] |= 0x80  # hpack's _encode_indexed
                block += field
            flags = _END_HEADERS | (_END_STREAM if n == len(self._lists) else 0)
            frames.append((frame_head(len(block), _HEADERS, flags, 0)[:5], bytes(block)))
        self._frames = tuple(frames)
        return self._frames


def send_whole_response(h2c: h2.connection.H2Connection, sid: int, frames: tuple[tuple[bytes, bytes], ...],
                        message: list) -> bool:
    """Response HEADERS, one DATA frame of `message` (a list of buffers), trailers HEADERS with
    END_STREAM (`frames`: from ConstantBlocks, headers then trailers), queued as h2's
    send_headers, send_data and send_headers(end_stream=True) would queue them, with the same
    state changes. Only on a stream the client has half-closed, with nothing sent yet, and when
    the message fits one frame and both windows; else False, with nothing done."""
    if h2c.state_machine.state is not _SERVER_OPEN:
        return False
    stream = h2c.streams.get(sid)
    if stream is None:
        return False
    machine = stream.state_machine
    if machine.state is not _HALF_CLOSED_REMOTE or machine.headers_sent or machine.client is not False:
        return False
    size = 0
    for part in message:
        size += len(part)
    if (size > h2c.max_outbound_frame_size or size > h2c.outbound_flow_control_window
            or size > stream.outbound_flow_control_window):
        return False
    # process_input(SEND_HEADERS, SEND_DATA, SEND_HEADERS, SEND_END_STREAM) from HALF_CLOSED_REMOTE
    # on a server stream: response_sent, trailers sent, send_end_stream -> CLOSED
    machine.headers_sent = True
    machine.trailers_sent = True
    machine.stream_closed_by = _CLOSED_BY_SEND_END_STREAM
    machine.state = _CLOSED
    stream.outbound_flow_control_window -= size
    h2c.outbound_flow_control_window -= size
    (head, head_block), (trailer, trailer_block) = frames
    sid4 = _SID.pack(sid)
    h2c._data_to_send += b"".join([head, sid4, head_block, _HEAD.pack(size >> 8, size & 0xFF, _DATA, 0, sid),
                                   *message, trailer, sid4, trailer_block])
    return True


# -- receiving ---------------------------------------------------------------------------------------
_OPEN = h2.stream.StreamState.OPEN
_ODD = h2.connection.AllowedStreamIDs.ODD
_decode_headers = getattr(h2.connection, "_decode_headers", None)
_CACHED_BLOCKS = 64  # distinct request header blocks remembered per connection (then forgotten)
_CACHED_BLOCK_SIZE = 1024  # a larger block is decoded each time


class DecodedBlocks:
    """Received header blocks already decoded, while decoding them again would change nothing.

    A block whose decoding left the dynamic table as it was (indexed fields and literals that
    are not indexed) decodes to the same headers as long as the table and the decoder's limits
    stay the same; a client that sends the same headers on every call sends the same block."""

    __slots__ = ("_decoder", "_table", "_front", "_length", "_limits", "_cache")

    def __init__(self, decoder) -> None:
        self._decoder = decoder
        self._table = decoder.header_table
        self._front: object = _STALE
        self._length = -1
        self._limits: tuple[int, int, int] = (-1, -1, -1)
        self._cache: dict[bytes, list] = {}

    def decode(self, block: bytes) -> list:
        """The block's headers, as h2's _decode_headers (and its errors); the list is shared."""
        decoder, table = self._decoder, self._table
        entries = table.dynamic_entries
        front = entries[0] if entries else None
        limits = (decoder.max_header_list_size, decoder.max_allowed_table_size, table.maxsize)
        cache = self._cache
        if front is self._front and len(entries) == self._length and limits == self._limits:
            headers = cache.get(block)
            if headers is not None:
                return headers
        else:
            cache.clear()
            self._front, self._length, self._limits = front, len(entries), limits
        headers = _decode_headers(decoder, block)
        if ((entries[0] if entries else None) is front and len(entries) == self._length
                and table.maxsize == limits[2] and len(block) <= _CACHED_BLOCK_SIZE):
            if len(cache) >= _CACHED_BLOCKS:
                cache.clear()
            cache[block] = headers
        return headers


def receive(h2c: h2.connection.H2Connection, data: bytes, blocks: DecodedBlocks) -> list:
    """h2c.receive_data(data), with the frames of a plain call (a new stream's HEADERS, DATA on an
    open stream) handled here and every other frame by h2 itself, one frame at a time, in order.
    The same events, the same state, the same errors (a ProtocolError ends the connection)."""
    buffer = h2c.incoming_buffer
    if (getattr(buffer, _UNPARSED) or buffer._headers_buffer or buffer._preamble_len
            or type(data) is not bytes):
        return h2c.receive_data(data)
    events: list = []
    view = memoryview(data)
    pos, end = 0, len(data)
    while end - pos >= 9:
        length = int.from_bytes(view[pos:pos + 3], "big")
        stop = pos + 9 + length
        if stop > end:
            break
        kind, flags = data[pos + 3], data[pos + 4]
        got = None
        if (kind <= _HEADERS and h2c.state_machine.state is _SERVER_OPEN and length <= h2c.max_inbound_frame_size
                and not buffer._headers_buffer):
            sid = int.from_bytes(view[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            try:
                if kind == _DATA:
                    if not flags & ~_END_STREAM:  # bytes of its own, as h2 hands out: a view would
                        got = _data(h2c, sid, flags, data[pos + 9:stop])  # pin the whole chunk
                elif flags & ~_END_STREAM == _END_HEADERS:
                    got = _headers(h2c, sid, flags, data[pos + 9:stop], blocks)
            except h2.exceptions.ProtocolError as exc:
                h2c._terminate_connection(exc.error_code)  # as receive_data does
                raise
        if got is None:
            got = h2c.receive_data(view[pos:stop])
        events += got
        pos = stop
    if pos < end:
        events += h2c.receive_data(view[pos:])
    return events


def _data(h2c: h2.connection.H2Connection, sid: int, flags: int, body: bytes) -> list | None:
    """_receive_data_frame for an unpadded frame on an open stream (None: not that case)."""
    stream = h2c.streams.get(sid)
    if stream is None or stream.state_machine.state is not _OPEN:
        return None
    length = len(body)
    h2c._inbound_flow_control_window_manager.window_consumed(length)
    return stream.receive_data(body, bool(flags & _END_STREAM), length)[1]


def _headers(h2c: h2.connection.H2Connection, sid: int, flags: int, block: bytes,
             blocks: DecodedBlocks) -> list | None:
    """_receive_headers_frame for a whole block (END_HEADERS, no padding or priority) opening a
    new client stream (None: not that case)."""
    if not sid & 1 or sid <= h2c.highest_inbound_stream_id or sid in h2c.streams:
        return None
    if h2c.open_inbound_streams + 1 > h2c.local_settings.max_concurrent_streams:
        return None  # h2 refuses it
    headers = blocks.decode(block)
    stream = h2c._begin_new_stream(sid, _ODD)
    return stream.receive_headers(headers, bool(flags & _END_STREAM), h2c.config.header_encoding)[1]


# -- what this module relies on in h2 -----------------------------------------------------------------
def _probe() -> str | None:
    """The name of the FrameBuffer attribute holding bytes not parsed yet (`_data` since h2 4.2,
    `data` before), or None when this h2 lacks something the shortcuts use: then they are off."""
    try:
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        buffer = h2c.incoming_buffer
        stream = h2.stream.H2Stream(1, h2c.config, 65535, 65535)
        machine = stream.state_machine
        unparsed = "_data" if hasattr(buffer, "_data") else "data"
        (getattr(buffer, unparsed), buffer._headers_buffer, buffer._preamble_len, h2c.streams,
         h2c._inbound_flow_control_window_manager.window_consumed, h2c._begin_new_stream,
         h2c._terminate_connection, h2c.highest_inbound_stream_id, h2c.max_inbound_frame_size,
         h2c.max_outbound_frame_size, h2c.outbound_flow_control_window, stream.receive_data,
         stream.receive_headers, stream.outbound_flow_control_window, machine.headers_sent,
         machine.trailers_sent, machine.stream_closed_by, machine.client,
         h2c.encoder.header_table.dynamic_entries, h2c.decoder.max_allowed_table_size)
    except (AttributeError, TypeError):
        return None
    return unparsed if isinstance(h2c._data_to_send, bytearray) and callable(_decode_headers) else None


_UNPARSED = _probe()
AVAILABLE = _UNPARSED is not None  # else GrpcConnection leaves everything to h2
