"""grpc_messages: ModelInferRequest -> core (Triton's messages), and our hand-written responses
byte-identical to tritonclient's generated messages (the oracle) for the same content."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as tc
from tritonclient.utils import deserialize_bytes_tensor

from triton_asyncio.codec import grpc_messages as gm
from triton_asyncio.codec.kserve_metadata import model_stats_entry
from triton_asyncio.core.request import (
    FLAG_SEQUENCE_END,
    FLAG_SEQUENCE_START,
    InferenceRequest,
    RequestedOutput,
    ShmRef,
)
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor, serialize_bytes
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import grpc_service_pb2 as pb
from triton_asyncio.pb import model_config_pb2 as mc

P = pb.InferParameter


def _request(*inputs, raws=(), **fields) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple", **fields)
    for name, datatype, shape in inputs:
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
    msg.raw_input_contents.extend(raws)
    return msg


def _simple(**fields) -> pb.ModelInferRequest:
    a = np.arange(16, dtype=np.int32).tobytes()
    return _request(("INPUT0", "INT32", [1, 16]), ("INPUT1", "INT32", [1, 16]), raws=[a, a[::-1]], **fields)


def _decode(msg) -> InferenceRequest:
    return gm.decode_infer(gm.parse_infer(msg.SerializeToString()))


def _error(msg) -> TritonError:
    with pytest.raises(TritonError) as info:
        _decode(msg)
    return info.value


# -- request ---------------------------------------------------------------------------------
def test_raw_inputs_are_the_bytes_upb_hands_out():
    msg = _simple(id="7", model_version="1")
    request = _decode(msg)
    assert (request.model_name, request.model_version, request.id) == ("simple", 1, "7")
    assert list(request.inputs) == ["INPUT0", "INPUT1"]
    t0, t1 = request.inputs["INPUT0"], request.inputs["INPUT1"]
    assert (t0.datatype, t0.shape) == ("INT32", [1, 16])
    assert type(t0.raw) is bytes and t0.raw == msg.raw_input_contents[0] and t1.raw == msg.raw_input_contents[1]
    assert request.outputs is None and request.parameters == {} and request.shm_inputs is None


def test_parse_accepts_memoryview_and_maps_garbage_to_internal():
    buffer = memoryview(bytearray(_simple().SerializeToString()))
    assert gm.parse_infer(buffer).model_name == "simple"
    with pytest.raises(TritonError) as info:
        gm.parse_infer(b"\x0a\xff")
    assert info.value.code is ErrorCode.INTERNAL


@pytest.mark.parametrize("datatype, field, values, dtype", [
    ("BOOL", "bool_contents", [True, False, True], np.bool_),
    ("INT8", "int_contents", [1, -2, 200], np.int8),  # narrowed to the low byte, as Triton does
    ("INT16", "int_contents", [1, -2, 70000], np.int16),
    ("INT32", "int_contents", [1, -2, 2**31 - 1], np.int32),
    ("INT64", "int64_contents", [1, -2, 2**62], np.int64),
    ("UINT8", "uint_contents", [1, 2, 300], np.uint8),
    ("UINT16", "uint_contents", [1, 2, 70000], np.uint16),
    ("UINT32", "uint_contents", [1, 2, 2**32 - 1], np.uint32),
    ("UINT64", "uint64_contents", [1, 2, 2**64 - 1], np.uint64),
    ("FP32", "fp32_contents", [0.5, -1.25, 3.0], np.float32),
    ("FP64", "fp64_contents", [0.5, -1.25, 1e300], np.float64),
])
def test_typed_contents_become_little_endian_bytes(datatype, field, values, dtype):
    msg = _request(("X", datatype, [3]))
    getattr(msg.inputs[0].contents, field).extend(values)
    tensor = _decode(msg).inputs["X"]
    wide = {np.int8: np.int32, np.int16: np.int32, np.uint8: np.uint32, np.uint16: np.uint32}.get(dtype, dtype)
    assert tensor.raw == np.array(values, dtype=wide).astype(dtype).tobytes()
    assert tensor.as_numpy().tolist() == np.array(values, dtype=wide).astype(dtype).tolist()


def test_bytes_contents_are_length_prefixed():
    msg = _request(("X", "BYTES", [3]))
    msg.inputs[0].contents.bytes_contents.extend([b"ab", b"", "wö".encode()])
    tensor = _decode(msg).inputs["X"]
    assert tensor.raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00w\xc3\xb6"
    assert list(deserialize_bytes_tensor(tensor.raw)) == [b"ab", b"", "wö".encode()]


def test_empty_contents_is_an_empty_tensor():
    msg = _request(("X", "FP32", [0]))
    msg.inputs[0].contents.SetInParent()
    assert _decode(msg).inputs["X"].raw == b""


@pytest.mark.parametrize("datatype, field, got", [
    ("FP16", "fp32_contents", "FP32"), ("BF16", "fp32_contents", "FP32"), ("FP32", "int_contents", "INT32"),
    ("INT8", "int64_contents", "INT64"), ("BYTES", "fp64_contents", "FP64"), ("FOO", "bool_contents", "BOOL"),
])
def test_typed_contents_of_another_type(datatype, field, got):
    msg = _request(("X", datatype, [1]))
    getattr(msg.inputs[0].contents, field).append(1)
    expected = datatype if datatype != "FOO" else "<invalid>"
    e = _error(msg)
    assert e.code is ErrorCode.INVALID_ARG
    assert e.message == (f"unexpected explicit tensor data for input tensor 'X' for model 'simple' of type "
                         f"'{got}', expected datatype '{expected}'")


def test_two_typed_fields():
    msg = _request(("X", "INT32", [1]))
    msg.inputs[0].contents.int_contents.append(1)
    msg.inputs[0].contents.fp32_contents.append(1)
    assert _error(msg).message == ("unexpected explicit tensor data for input tensor 'X' for model 'simple', "
                                   "binary data was already supplied.")


def test_contents_with_raw_input_contents():
    msg = _request(("A", "INT32", [1]), ("X", "INT32", [1]), raws=[b"\0" * 4])
    msg.inputs[1].contents.int_contents.append(1)
    assert _error(msg).message == ("contents field must not be specified when using raw_input_contents for "
                                   "'X' for model 'simple'")


def test_fewer_raw_entries_than_inputs_and_extra_ones():
    msg = _simple()
    del msg.raw_input_contents[1]
    e = _error(msg)
    assert (e.code, e.message) == (ErrorCode.INVALID_ARG,
                                   "unable to find data for input tensor 'INPUT1' for model 'simple' in request.")
    msg = _simple()
    msg.raw_input_contents.append(b"extra")
    assert len(_decode(msg).inputs) == 2  # unused raw entries are not an error (Triton)


def test_duplicate_input():
    msg = _simple()
    msg.inputs[1].name = "INPUT0"
    assert _error(msg).message == "input 'INPUT0' already exists in request"


def test_request_parameters():
    msg = _simple()
    params = msg.parameters
    params["sequence_id"].int64_param = -1
    params["sequence_start"].bool_param = True
    params["sequence_end"].bool_param = True
    params["priority"].uint64_param = 3
    params["timeout"].int64_param = 1000
    params["triton_enable_empty_final_response"].bool_param = True
    params["binary_data_output"].bool_param = True  # a custom parameter on gRPC
    params["i"].int64_param = -5
    params["s"].string_param = "x"
    params["d"].double_param = 1.5
    request = _decode(msg)
    assert request.correlation_id == 2**64 - 1  # int64 taken as uint64
    assert request.flags == FLAG_SEQUENCE_START | FLAG_SEQUENCE_END
    assert (request.priority, request.timeout_us) == (3, 1000)
    assert request.parameters == {"binary_data_output": True, "i": -5, "s": "x", "d": 1.5}
    msg = _simple()
    msg.parameters["sequence_id"].string_param = "abc"
    msg.parameters["priority"].int64_param = 2
    request = _decode(msg)
    assert (request.correlation_id, request.priority, request.flags) == ("abc", 2, 0)


@pytest.mark.parametrize("key, param, message", [
    ("sequence_id", P(bool_param=True), "invalid value type for 'sequence_id' parameter, expected int64_param or string_param."),
    ("sequence_start", P(int64_param=1), "invalid value type for 'sequence_start' parameter, expected bool_param."),
    ("sequence_end", P(), "invalid value type for 'sequence_end' parameter, expected bool_param."),
    ("priority", P(int64_param=-1), "invalid value for 'priority', expected value >= 0."),
    ("priority", P(string_param="1"), "invalid value type for 'priority' parameter, expected int64_param or uint64_param."),
    ("timeout", P(uint64_param=1), "invalid value type for 'timeout' parameter, expected int64_param."),
    ("triton_x", P(bool_param=True), "parameter keys starting with 'triton_' are reserved for Triton usage. Only the "
                                     "following keys starting with 'triton_' are allowed: triton_enable_empty_final_response"),
    ("triton_enable_empty_final_response", P(int64_param=1),
     "invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param."),
    ("custom", P(uint64_param=1), "invalid value type for 'custom' parameter, expected int64_param, bool_param, or string_param."),
])
def test_bad_request_parameters(key, param, message):
    msg = _simple()
    msg.parameters[key].CopyFrom(param)
    e = _error(msg)
    assert (e.code, e.message) == (ErrorCode.INVALID_ARG, message)


def _shm(tensor, region="r", offset=None, size=64):
    if region is not None:
        tensor.parameters["shared_memory_region"].string_param = region
    if offset is not None:
        tensor.parameters["shared_memory_offset"].int64_param = offset
    if size is not None:
        tensor.parameters["shared_memory_byte_size"].int64_param = size


def test_shm_input_and_output_become_shm_refs():
    msg = _request(("INPUT0", "INT32", [1, 16]), ("INPUT1", "INT32", [1, 16]), raws=[b"\0" * 64])
    _shm(msg.inputs[0], offset=16)
    out = msg.outputs.add(name="OUTPUT0")
    _shm(out, region="o", size=64)
    request = _decode(msg)
    assert request.shm_inputs == {"INPUT0": ShmRef("r", 64, 16, "INT32", [1, 16])}
    assert list(request.inputs) == ["INPUT1"]  # the raw entry went to the first non-shm input
    assert request.outputs == {"OUTPUT0": RequestedOutput("OUTPUT0", True, 0, ShmRef("o", 64, 0))}


@pytest.mark.parametrize("region, offset, size, message", [
    (None, 0, None, "'shared_memory_offset' can not be specified without 'shared_memory_region' parameter for tensor 'X'"),
    (None, None, 8, "'shared_memory_byte_size' can not be specified without 'shared_memory_region' parameter for tensor 'X'"),
    ("r", None, None, "'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor 'X'"),
])
def test_bad_shm_parameters(region, offset, size, message):
    msg = _request(("X", "INT32", [1]), raws=[b"\0" * 4])
    _shm(msg.inputs[0], region, offset, size)
    assert _error(msg).message == message


def test_shm_parameter_types_and_contents():
    msg = _request(("X", "INT32", [1]))
    msg.inputs[0].parameters["shared_memory_region"].int64_param = 1
    assert _error(msg).message == ("invalid value type for 'shared_memory_region' parameter for tensor 'X', "
                                   "expected string_param.")
    msg = _request(("X", "INT32", [1]))
    _shm(msg.inputs[0])
    msg.inputs[0].parameters["shared_memory_byte_size"].uint64_param = 4
    assert _error(msg).message == ("invalid value type for 'shared_memory_byte_size' parameter for tensor 'X', "
                                   "expected int64_param.")
    msg = _request(("X", "INT32", [1]))
    _shm(msg.inputs[0])
    msg.inputs[0].contents.int_contents.append(1)
    assert _error(msg).message == ("unexpected 'content' provided when using shared memory for input tensor 'X' "
                                   "for model 'simple'")


def test_requested_outputs_and_classification():
    msg = _simple()
    msg.outputs.add(name="OUTPUT0")
    msg.outputs.add(name="OUTPUT1").parameters["classification"].int64_param = 3
    request = _decode(msg)
    assert request.outputs == {"OUTPUT0": RequestedOutput("OUTPUT0", True),
                               "OUTPUT1": RequestedOutput("OUTPUT1", True, 3)}


@pytest.mark.parametrize("param, message", [
    (P(uint64_param=3), "invalid value type for 'classification' parameter, expected int64_param"),
    (P(int64_param=0), "invalid value for 'classification' parameter, expected >= 0"),
])
def test_bad_classification(param, message):
    msg = _simple()
    msg.outputs.add(name="OUTPUT0").parameters["classification"].CopyFrom(param)
    assert _error(msg).message == message


def test_classification_with_shm():
    msg = _simple()
    out = msg.outputs.add(name="OUTPUT0")
    out.parameters["classification"].int64_param = 1
    _shm(out)
    assert _error(msg).message == "output can't set both 'shared_memory_region' and 'classification'"


@pytest.mark.parametrize("text, version", [("", -1), ("1", 1), ("12", 12), (" 3", 3), ("4x", 4), ("+5", 5)])
def test_parse_version(text, version):
    assert gm.parse_version(text) == version


def test_parse_version_errors():
    with pytest.raises(TritonError) as info:
        gm.parse_version("x")
    assert info.value.message == ("failed to get model version from specified version string 'x' (details: stol), "
                                  "version should be an integral value > 0")
    with pytest.raises(TritonError) as info:
        gm.parse_version("-1")
    assert info.value.message == "invalid model version specified '-1' , version should be an integral value > 0"


# -- response: byte-identical to tritonclient's messages -------------------------------------
def _tc_outputs(*tensors):
    return [tc.ModelInferResponse.InferOutputTensor(name=n, datatype=d, shape=s) for n, d, s in tensors]


def test_infer_response_byte_identical_to_tritonclient():
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    strings = np.array([b"hi", b"", "wö".encode()], dtype=np.object_)
    response = InferenceResponse("simple", "1", outputs=[
        Tensor("OUTPUT0", "INT32", [1, 16], array=a), Tensor("S", "BYTES", [3], array=strings),
        Tensor("E", "FP32", [0, 300], raw=b""), Tensor("R", "UINT8", [300], raw=memoryview(bytes(range(256)) * 2)[:300])],
        parameters={"p": 7})
    request = InferenceRequest("simple", -1, id="42")
    ours = gm.encode_infer_response(response, request)
    oracle = tc.ModelInferResponse(
        model_name="simple", model_version="1", id="42", parameters={"p": tc.InferParameter(int64_param=7)},
        outputs=_tc_outputs(("OUTPUT0", "INT32", [1, 16]), ("S", "BYTES", [3]), ("E", "FP32", [0, 300]),
                            ("R", "UINT8", [300])),
        raw_output_contents=[a.tobytes(), serialize_bytes(strings), b"", (bytes(range(256)) * 2)[:300]])
    assert ours == oracle.SerializeToString()
    parsed = tc.ModelInferResponse.FromString(ours)
    assert list(deserialize_bytes_tensor(parsed.raw_output_contents[1])) == [b"hi", b"", "wö".encode()]


@pytest.mark.parametrize("value, param", [
    (True, tc.InferParameter(bool_param=True)), (False, tc.InferParameter(bool_param=False)),
    (-3, tc.InferParameter(int64_param=-3)), ("", tc.InferParameter(string_param="")),
    ("vé", tc.InferParameter(string_param="vé")), (0.25, tc.InferParameter(double_param=0.25)),
])
def test_response_parameters_byte_identical(value, param):
    response = InferenceResponse("m", "2", parameters={"k": value})
    ours = gm.encode_infer_response(response, InferenceRequest("m"))
    assert ours == tc.ModelInferResponse(model_name="m", model_version="2", parameters={"k": param}).SerializeToString()


def test_bytes_response_parameter_is_unsupported():
    with pytest.raises(TritonError) as info:
        gm.encode_infer_response(InferenceResponse("m", "1", parameters={"k": b"x"}), InferenceRequest("m"))
    assert info.value.code is ErrorCode.UNSUPPORTED


def test_only_requested_outputs_shm_ones_without_bytes():
    a = np.arange(4, dtype=np.int32)
    response = InferenceResponse("simple", "1", outputs=[Tensor("A", "INT32", [4], array=a),
                                                         Tensor("B", "INT32", [4], array=a), Tensor("C", "INT32", [4], array=a)])
    request = InferenceRequest("simple", outputs={"C": RequestedOutput("C"),
                                                  "A": RequestedOutput("A", shm=ShmRef("r", 16))})
    ours = gm.encode_infer_response(response, request)
    oracle = tc.ModelInferResponse(model_name="simple", model_version="1",
                                   outputs=_tc_outputs(("A", "INT32", [4]), ("C", "INT32", [4])),
                                   raw_output_contents=[b"", a.tobytes()])
    assert ours == oracle.SerializeToString()


def test_classification_output_is_bytes_strings():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    response = InferenceResponse("digits", "1", outputs=[Tensor("PROBS", "FP32", [2, 3], array=probs)])
    request = InferenceRequest("digits", outputs={"PROBS": RequestedOutput("PROBS", True, 2)})
    parsed = tc.ModelInferResponse.FromString(
        gm.encode_infer_response(response, request, {"PROBS": ["a", "b", "c"]}, max_batch_size=8))
    out = parsed.outputs[0]
    assert (out.datatype, list(out.shape)) == ("BYTES", [2, 2])
    assert list(deserialize_bytes_tensor(parsed.raw_output_contents[0])) == [
        b"0.700000:1:b", b"0.200000:2:c", b"0.500000:0:a", b"0.300000:2:c"]


def test_stream_response_and_errors_byte_identical():
    a = np.arange(2, dtype=np.int64)
    response = InferenceResponse("simple", "1", outputs=[Tensor("O", "INT64", [2], array=a)])
    ours = gm.encode_stream_response(response, InferenceRequest("simple", id="9"))
    inner = tc.ModelInferResponse(model_name="simple", model_version="1", id="9",
                                  parameters={"triton_final_response": tc.InferParameter(bool_param=True)},
                                  outputs=_tc_outputs(("O", "INT64", [2])), raw_output_contents=[a.tobytes()])
    assert ours == tc.ModelStreamInferResponse(infer_response=inner).SerializeToString()
    assert gm.encode_stream_error("bad", "9") == tc.ModelStreamInferResponse(
        error_message="bad", infer_response=tc.ModelInferResponse(id="9")).SerializeToString()
    late = tc.ModelInferResponse(model_name="m", id="9",
                                 parameters={"triton_final_response": tc.InferParameter(bool_param=True)})
    assert gm.encode_stream_error("boom", "9", "m", "") == tc.ModelStreamInferResponse(
        error_message="boom", infer_response=late).SerializeToString()


def test_response_size_limit(monkeypatch):
    monkeypatch.setattr(gm, "MAX_MESSAGE_SIZE", 100)
    response = InferenceResponse("m", "1", outputs=[Tensor("O", "UINT8", [200], raw=bytes(200))])
    with pytest.raises(TritonError) as info:
        gm.encode_infer_response(response, InferenceRequest("m"))
    size = tc.ModelInferResponse(model_name="m", model_version="1", outputs=_tc_outputs(("O", "UINT8", [200])),
                                 raw_output_contents=[bytes(200)]).ByteSize()
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == f"Response has byte size {size} which exceeds gRPC's byte size limit 100."


# -- other RPC responses ---------------------------------------------------------------------
def test_server_and_model_metadata():
    parsed = tc.ServerMetadataResponse.FromString(gm.server_metadata("triton", "2.73.0", ["a", "b"]))
    assert (parsed.name, parsed.version, list(parsed.extensions)) == ("triton", "2.73.0", ["a", "b"])
    body = gm.model_metadata("simple", ["1"], "onnxruntime_onnx", [("INPUT0", "INT32", [-1, 16])],
                             [("OUTPUT0", "INT32", [-1, 16])])
    meta = tc.ModelMetadataResponse.TensorMetadata
    assert body == tc.ModelMetadataResponse(
        name="simple", versions=["1"], platform="onnxruntime_onnx",
        inputs=[meta(name="INPUT0", datatype="INT32", shape=[-1, 16])],
        outputs=[meta(name="OUTPUT0", datatype="INT32", shape=[-1, 16])]).SerializeToString()


def test_model_config_is_the_config_message():
    config = mc.ModelConfig(name="simple", platform="onnxruntime_onnx", max_batch_size=8)
    config.input.add(name="INPUT0", data_type=mc.TYPE_INT32, dims=[16])
    parsed = tc.ModelConfigResponse.FromString(gm.model_config(config))
    assert parsed.config.SerializeToString() == config.SerializeToString()
    assert parsed.config.input[0].name == "INPUT0" and parsed.config.max_batch_size == 8


def test_model_statistics_same_numbers_as_http():
    stats = ModelStats(last_inference_ms=123, inference_count=9, execution_count=4)
    stats.success.add(1000, 5)
    stats.queue.add(10, 5)
    stats.compute_infer.add(700, 5)
    stats.batch(2).compute_infer.add(300)
    stats.batch(1).compute_input.add(20, 2)
    parsed = tc.ModelStatisticsResponse.FromString(gm.model_statistics([("simple", "1", stats)]))
    entry, http = parsed.model_stats[0], model_stats_entry("simple", "1", stats)
    assert (entry.name, entry.version, entry.last_inference, entry.inference_count, entry.execution_count) == (
        http["name"], http["version"], http["last_inference"], http["inference_count"], http["execution_count"])
    for key, d in http["inference_stats"].items():
        got = getattr(entry.inference_stats, key)
        assert {"count": got.count, "ns": got.ns} == d
    assert [b.batch_size for b in entry.batch_stats] == [b["batch_size"] for b in http["batch_stats"]] == [1, 2]
    for got, want in zip(entry.batch_stats, http["batch_stats"], strict=True):
        for key in ("compute_input", "compute_infer", "compute_output"):
            assert {"count": getattr(got, key).count, "ns": getattr(got, key).ns} == want[key]


def test_repository_index():
    rows = [("simple", "1", "READY", ""), ("broken", "1", "UNAVAILABLE", "Internal: x"), ("new", None, None, "")]
    parsed = tc.RepositoryIndexResponse.FromString(gm.repository_index(rows))
    assert [(m.name, m.version, m.state, m.reason) for m in parsed.models] == [
        ("simple", "1", "READY", ""), ("broken", "1", "UNAVAILABLE", "Internal: x"), ("new", "", "", "")]


def test_varint_matches_protobuf():
    for n in (0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)):
        ours = gm._varint(n)
        assert tc.InferParameter(int64_param=n).SerializeToString() == b"\x10" + ours
    assert struct.unpack("<I", b"\x01\x00\x00\x00")[0] == 1
