"""Frames of the stub control channel: pure encode/decode, partial feeds, a socketpair round trip."""
from __future__ import annotations

import socket
import threading

import pytest

from triton_asyncio.backends.python import ipc


def test_encode_decode_round_trip():
    meta = {"batch": 7, "requests": [{"id": 1, "inputs": [("IN", "FP32", [2], 64, 8, None)], "p": b"\x00"}]}
    frame = ipc.encode(ipc.Cmd.EXECUTE, meta)
    assert ipc.FrameDecoder().feed(frame) == [(ipc.Cmd.EXECUTE, meta)]


def test_decoder_waits_for_whole_frames_byte_by_byte():
    frames = ipc.encode(ipc.Cmd.LOG, {"level": "INFO", "msg": "hi"}) + ipc.encode(ipc.Cmd.FINALIZE, {})
    decoder, got = ipc.FrameDecoder(), []
    for i in range(len(frames)):
        got += decoder.feed(frames[i:i + 1])
    assert got == [(ipc.Cmd.LOG, {"level": "INFO", "msg": "hi"}), (ipc.Cmd.FINALIZE, {})]
    assert decoder.pending == 0


def test_unknown_command_is_a_protocol_error():
    frame = ipc.HEADER.pack(1, 200) + b"N"
    with pytest.raises(ipc.ProtocolError, match="unknown command 200"):
        ipc.FrameDecoder().feed(frame)


def test_corrupt_body_is_a_protocol_error():
    with pytest.raises(ipc.ProtocolError, match="bad READY body"):
        ipc.FrameDecoder().feed(ipc.HEADER.pack(2, ipc.Cmd.READY) + b"\xff\xff")


def test_channel_round_trip_and_eof():
    a, b = socket.socketpair()
    left, right = ipc.Channel(a), ipc.Channel(b)
    big = {"blob": b"x" * (1 << 20)}  # larger than one socket buffer: recv must loop
    sender = threading.Thread(target=left.send, args=(ipc.Cmd.BLS_CALL, big))
    sender.start()
    assert right.recv() == (ipc.Cmd.BLS_CALL, big)
    sender.join()
    left.close()
    assert right.recv() is None
    right.close()


def test_eof_inside_a_frame_is_a_protocol_error():
    a, b = socket.socketpair()
    a.sendall(ipc.encode(ipc.Cmd.READY, {"pid": 1})[:-1])
    a.close()
    with pytest.raises(ipc.ProtocolError, match="inside a frame"):
        ipc.Channel(b).recv()
    b.close()
