"""Valid inputs for every fuzz target: the hypothesis tests mutate them, scripts/fuzz.py seeds atheris with them.

Rules: small, hand-written, and each one accepted by its parser, so mutations start from deep inside
the happy path instead of failing at the first byte.
"""
from __future__ import annotations

import json
import struct

from triton_asyncio.pb import grpc_service_pb2 as pb


def _ints(n: int) -> bytes:
    return struct.pack(f"<{n}i", *range(n))


INFER_JSON = json.dumps({
    "id": "r1",
    "parameters": {"sequence_id": 7, "sequence_start": True, "priority": 1, "custom": "x"},
    "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 4], "data": [[1, 2, 3, 4]]},
        {"name": "INPUT1", "datatype": "BYTES", "shape": [2], "data": ["a", "bc"]},
    ],
    "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True, "classification": 2}}],
}).encode()

BINARY_HEADER = json.dumps({
    "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 4], "parameters": {"binary_data_size": 16}},
        {"name": "INPUT1", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
    ],
}).encode()
BINARY_BODY = BINARY_HEADER + _ints(4) + struct.pack("<2f", 1.0, 2.0)

SHM_INFER_JSON = json.dumps({
    "inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [16], "parameters": {
        "shared_memory_region": "r", "shared_memory_byte_size": 64, "shared_memory_offset": 0}}],
    "outputs": [{"name": "OUTPUT0", "parameters": {"shared_memory_region": "o", "shared_memory_byte_size": 64}}],
}).encode()

KSERVE = [(INFER_JSON, None), (BINARY_BODY, len(BINARY_HEADER)), (SHM_INFER_JSON, None)]


def http_requests() -> list[bytes]:
    """A GET, a JSON infer, a binary infer with IHCL, a chunked POST, and an HTTP/1.0 request."""
    return [
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(INFER_JSON), INFER_JSON),
        b"POST /v2/models/simple/versions/1/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: %d"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(BINARY_HEADER), len(BINARY_BODY), BINARY_BODY),
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(INFER_JSON), INFER_JSON),
        b"GET /v2/models/simple/config HTTP/1.0\r\n\r\n",
    ]


def grpc_infer_request() -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple", model_version="1", id="r1")
    msg.parameters["sequence_id"].int64_param = 3
    msg.parameters["sequence_start"].bool_param = True
    a = msg.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 4])
    a.contents.int_contents.extend([1, 2, 3, 4])
    b = msg.inputs.add(name="INPUT1", datatype="BYTES", shape=[2])
    b.contents.bytes_contents.extend([b"a", b"bc"])
    c = msg.inputs.add(name="INPUT2", datatype="INT32", shape=[16])
    c.parameters["shared_memory_region"].string_param = "r"
    c.parameters["shared_memory_byte_size"].int64_param = 64
    out = msg.outputs.add(name="OUTPUT0")
    out.parameters["classification"].int64_param = 2
    return msg


def grpc_raw_request() -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple")
    msg.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 4])
    msg.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 4])
    msg.raw_input_contents.extend([_ints(4), _ints(4)])
    return msg


CONFIGS = [
    b"""name: "m"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
instance_group [ { count: 2 kind: KIND_CPU } ]
""",
    b"""name: "m"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_STRING dims: [ -1 ] reshape: { shape: [ 1, -1 ] } optional: true } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2, -1 ] label_filename: "labels.txt" } ]
version_policy: { specific: { versions: [ 1, 3 ] } }
sequence_batching { max_sequence_idle_microseconds: 5000000 oldest { max_candidate_sequences: 4 }
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]
  state [ { input_name: "S_IN" output_name: "S_OUT" data_type: TYPE_INT32 dims: [ 1 ] } ] }
model_transaction_policy { decoupled: true }
parameters { key: "k" value: { string_value: "v" } }
""",
    b"""name: "m"
platform: "ensemble"
max_batch_size: 4
input [ { name: "A" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "B" data_type: TYPE_INT32 dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "simple" model_version: -1
  input_map { key: "INPUT0" value: "A" } output_map { key: "OUTPUT0" value: "B" } } ] }
""",
]

SHM_REGISTER = [
    b'{"key": "/key", "offset": 0, "byte_size": 64}',
    b'{"raw_handle": {"b64": "' + b"A" * 88 + b'"}, "device_id": 0, "byte_size": 64}',
]


def all_seeds() -> dict[str, list[bytes]]:
    """Seed corpora for the byte-level targets of targets.TARGETS (their framing bytes included)."""
    return {
        "http": [b"\x05" + r for r in http_requests()] + [b"\xff" + b"".join(http_requests())],
        "kserve": [(0xFFFF if ihcl is None else ihcl).to_bytes(2, "big") + body for body, ihcl in KSERVE],
        "grpc_framing": [b"\x03" + b"".join(encode_message(m.SerializeToString()))
                         for m in (grpc_infer_request(), grpc_raw_request())],
        "grpc_infer": [grpc_infer_request().SerializeToString(), grpc_raw_request().SerializeToString()],
        "config": list(CONFIGS),
        "shm_json": list(SHM_REGISTER),
    }


def encode_message(payload: bytes) -> list[bytes]:
    return [b"\x00" + len(payload).to_bytes(4, "big"), payload]
