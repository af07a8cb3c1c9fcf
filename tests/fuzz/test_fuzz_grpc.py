"""Fuzz gRPC framing reassembly (any chunking, corrupt prefixes) and ModelInferRequest decoding."""
from __future__ import annotations

import zlib

from hypothesis import example, given
from hypothesis import strategies as st

from triton_asyncio.codec.grpc_framing import MessageDecoder, encode_message
from triton_asyncio.pb import grpc_service_pb2 as pb

from . import seeds, targets
from .strategies import budget, cuts, mutated

INT64 = st.one_of(st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1))
DATATYPES = st.sampled_from(["BOOL", "UINT8", "UINT16", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                             "FP32", "FP64", "BYTES", "", "XYZ"])
PARAM_KEYS = st.sampled_from(["sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
                              "triton_enable_empty_final_response", "triton_x", "shared_memory_region",
                              "shared_memory_offset", "shared_memory_byte_size", "classification", "custom"])


def _set_param(param: pb.InferParameter, draw) -> None:
    kind = draw(st.sampled_from(["bool", "int64", "uint64", "string", "double", "none"]))
    if kind == "bool":
        param.bool_param = draw(st.booleans())
    elif kind == "int64":
        param.int64_param = draw(INT64)
    elif kind == "uint64":
        param.uint64_param = draw(st.integers(0, 2**64 - 1))
    elif kind == "string":
        param.string_param = draw(st.sampled_from(["r", "", "x" * 3]))
    elif kind == "double":
        param.double_param = draw(st.floats())


def _params(target, draw) -> None:
    for key in draw(st.lists(PARAM_KEYS, max_size=4, unique=True)):
        _set_param(target[key], draw)


_CONTENT_FIELDS = {
    "bool_contents": st.booleans(), "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": INT64, "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1), "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(), "bytes_contents": st.binary(max_size=8),
}


@st.composite
def infer_requests(draw) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=draw(st.sampled_from(["simple", ""])),
                               model_version=draw(st.sampled_from(["", "1", "-1", "x", " 7", "99999999999999999999"])))
    _params(msg.parameters, draw)
    for i in range(draw(st.integers(0, 3))):
        item = msg.inputs.add(name=draw(st.sampled_from([f"INPUT{i}", "INPUT0"])), datatype=draw(DATATYPES),
                              shape=draw(st.lists(INT64, max_size=4)))
        _params(item.parameters, draw)
        for field in draw(st.lists(st.sampled_from(sorted(_CONTENT_FIELDS)), max_size=2, unique=True)):
            getattr(item.contents, field).extend(draw(st.lists(_CONTENT_FIELDS[field], min_size=1, max_size=4)))
    msg.raw_input_contents.extend(draw(st.lists(st.binary(max_size=16), max_size=3)))
    for _ in range(draw(st.integers(0, 2))):
        _params(msg.outputs.add(name="OUTPUT0").parameters, draw)
    return msg


def _negative_shm_offset() -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple")
    item = msg.inputs.add(name="INPUT0", datatype="INT32", shape=[16])
    item.parameters["shared_memory_region"].string_param = "r"
    item.parameters["shared_memory_offset"].int64_param = -8
    item.parameters["shared_memory_byte_size"].int64_param = -(2**63)
    return msg


@budget(300)
@given(infer_requests())
@example(_negative_shm_offset())
def test_structured_infer_requests(msg):
    targets.check_grpc_request(msg)


@budget(200)
@given(mutated([seeds.grpc_infer_request().SerializeToString(), seeds.grpc_raw_request().SerializeToString()]))
@example(b"\x0a\xff\xff\xff\xff\x0f")  # a length-delimited field claiming 4 GiB
@example(b"\x22" * 200)  # nested messages opened 200 deep
def test_mutated_and_garbage_messages(buffer):
    targets.check_grpc_infer(buffer)


@budget(200)
@given(st.lists(st.tuples(st.binary(max_size=40), st.booleans()), max_size=5), cuts(),
       st.sampled_from([None, "gzip", "deflate"]))
def test_framing_reassembles_any_chunking(messages, positions, encoding):
    stream = b""
    for payload, compress in messages:
        if compress and encoding is not None:
            wbits = {"gzip": 31, "deflate": 15}[encoding]
            deflater = zlib.compressobj(6, zlib.DEFLATED, wbits)
            stream += b"\x01" + b"".join([len(packed := deflater.compress(payload) + deflater.flush())
                                          .to_bytes(4, "big"), packed])
        else:
            stream += b"".join(encode_message(payload))
    assert targets.check_framing(stream, positions, 1 << 16, encoding) == [p for p, _ in messages]


@budget(200)
@given(mutated([b"".join(encode_message(b"hello")) * 3, b"\x00\x00\x00\x00\x00"]), cuts(),
       st.sampled_from([None, "gzip"]), st.sampled_from([4, 1 << 16, 2**31 - 1]))
@example(b"\x00\x7f\xff\xff\xff" + b"x", [], None, 2**31 - 1)  # a 5-byte prefix claiming 2 GiB
def test_framing_corrupt_prefixes(stream, positions, encoding, max_size):
    targets.check_framing(stream, positions, max_size, encoding)


def test_framing_does_not_reserve_a_claimed_size():
    """Regression: a prefix claiming max_message_size used to allocate all of it before any byte came."""
    decoder = MessageDecoder(2**31 - 1)

    def run() -> None:
        assert decoder.feed(b"\x00\x7f\xff\xff\xff" + b"abc") == []
        assert decoder.feed(b"def") == []

    targets.bounded_alloc(11, run)
    assert decoder.pending == 6
