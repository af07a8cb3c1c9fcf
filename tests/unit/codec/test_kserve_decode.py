"""decode_infer against byte literals and tritonclient-built bodies."""
import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from triton_asyncio.codec import kserve_json
from triton_asyncio.codec.kserve_json import decode_infer
from triton_asyncio.core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START
from triton_asyncio.errors import ErrorCode, TritonError

MAX = 64 * 2**20
ARANGE = np.arange(16, dtype=np.int32).tobytes()
# What perf_analyzer sends for `simple` (two binary INT32 inputs, binary outputs).
PERF_HEADER = (b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},'
               b'{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],'
               b'"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},'
               b'{"name":"OUTPUT1","parameters":{"binary_data":true}}]}')
PERF_BODY = PERF_HEADER + ARANGE + np.ones(16, dtype=np.int32).tobytes()


def _error(body, header_length=None, max_input_size=MAX):
    with pytest.raises(TritonError) as e:
        decode_infer(body, header_length, "m", -1, max_input_size)
    return e.value


def test_perf_analyzer_binary_body_is_sliced_not_copied():
    body = bytearray(PERF_BODY)
    r = decode_infer(body, len(PERF_HEADER), "simple", 1, MAX)
    assert (r.model_name, r.model_version, r.id) == ("simple", 1, "")
    t0, t1 = r.inputs["INPUT0"], r.inputs["INPUT1"]
    assert isinstance(t0.raw, memoryview) and t0.raw.obj is body
    assert (t0.datatype, t0.shape, bytes(t0.raw)) == ("INT32", [1, 16], ARANGE)
    assert t1.as_numpy().tolist() == [[1] * 16]
    assert {n: (o.binary, o.classification, o.shm) for n, o in r.outputs.items()} == {
        "OUTPUT0": (True, 0, None), "OUTPUT1": (True, 0, None)}


def test_tritonclient_body_with_everything():
    i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
    i0.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    i1 = httpclient.InferInput("INPUT1", [2, 2], "FP32")
    i1.set_data_from_numpy(np.array([[0.5, 1], [np.inf, -2]], dtype=np.float32), binary_data=False)
    i2 = httpclient.InferInput("S", [2], "BYTES")
    i2.set_data_from_numpy(np.array([b"ab", "c\u00e9".encode()], dtype=np.object_), binary_data=False)
    i3 = httpclient.InferInput("SB", [2], "BYTES")
    i3.set_data_from_numpy(np.array([b"\x00\xff", b""], dtype=np.object_))
    outputs = [httpclient.InferRequestedOutput("OUTPUT0"),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=False, class_count=3)]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [i0, i1, i2, i3], outputs=outputs, request_id="42", sequence_id="corr", sequence_start=True,
        sequence_end=True, priority=2, timeout=1000, parameters={"custom": "x", "n": 5, "f": 1.5, "b": False})
    r = decode_infer(body, json_size, "m", 3, MAX)
    assert r.id == "42" and r.correlation_id == "corr"
    assert r.flags == FLAG_SEQUENCE_START | FLAG_SEQUENCE_END
    assert (r.priority, r.timeout_us) == (2, 1000)
    assert r.parameters == {"custom": "x", "n": 5, "f": 1.5, "b": False}
    assert r.inputs["INPUT0"].as_numpy().tolist() == [list(range(16))]
    fp = r.inputs["INPUT1"].as_numpy()
    assert fp.dtype == np.float32 and fp.tolist() == [[0.5, 1.0], [float("inf"), -2.0]]
    assert r.inputs["S"].as_numpy().tolist() == [b"ab", "c\u00e9".encode()]
    assert r.inputs["SB"].as_numpy().tolist() == [b"\x00\xff", b""]
    assert r.outputs["OUTPUT0"].binary and r.outputs["OUTPUT0"].classification == 0
    assert not r.outputs["OUTPUT1"].binary and r.outputs["OUTPUT1"].classification == 3


def test_no_outputs_uses_binary_data_output_default():
    i0 = httpclient.InferInput("INPUT0", [2], "INT64")
    i0.set_data_from_numpy(np.array([1, 2], dtype=np.int64), binary_data=False)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([i0])
    assert json_size is None
    r = decode_infer(body, None, "m", -1, MAX)
    assert r.outputs is None and r.binary_default is True
    r = decode_infer(b'{"inputs":[],"outputs":[]}', None, "m", -1, MAX)
    assert r.outputs is None and r.binary_default is False and r.inputs == {}


def test_nested_and_ragged_json_data_are_flattened():
    body = json.dumps({"inputs": [
        {"name": "A", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]},
        {"name": "B", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2], [3, 4, 5, 6]]},
        {"name": "C", "shape": [2, 2], "datatype": "BOOL", "data": [[True, False], [False, True]]},
        {"name": "D", "shape": [3], "datatype": "UINT8", "data": [1, 256, 255]},
        {"name": "E", "shape": [0, 4], "datatype": "FP16", "data": []},
        {"name": "F", "shape": [2], "datatype": "FP64", "data": [1, 2.5]},
        {"name": "G", "shape": [1, 2], "datatype": "BYTES", "data": [["x", "yz"]]}]}).encode()
    r = decode_infer(body, None, "m", -1, MAX)
    assert r.inputs["A"].as_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert r.inputs["B"].as_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert r.inputs["C"].as_numpy().dtype == np.bool_
    assert r.inputs["D"].as_numpy().tolist() == [1, 0, 255]  # truncated to width, as Triton
    assert r.inputs["E"].raw == b"" and r.inputs["E"].shape == [0, 4]
    assert r.inputs["F"].as_numpy().tolist() == [1.0, 2.5]
    assert r.inputs["G"].as_numpy().tolist() == [[b"x", b"yz"]]


def test_nan_and_infinity_tokens_accepted():
    body = b'{"inputs":[{"name":"X","shape":[3],"datatype":"FP32","data":[NaN,Infinity,-Infinity]}]}'
    values = decode_infer(body, None, "m", -1, MAX).inputs["X"].as_numpy()
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf


def test_shared_memory_input_and_output():
    body = json.dumps({"inputs": [{"name": "I", "shape": [1, 4], "datatype": "FP32", "parameters": {
        "shared_memory_region": "in", "shared_memory_byte_size": 16, "shared_memory_offset": 8}}],
        "outputs": [{"name": "O", "parameters": {"shared_memory_region": "out",
                                                 "shared_memory_byte_size": 16}}]}).encode()
    r = decode_infer(body, None, "m", -1, MAX)
    assert r.inputs == {}
    ref = r.shm_inputs["I"]
    assert (ref.region, ref.byte_size, ref.offset, ref.datatype, ref.shape) == ("in", 16, 8, "FP32", [1, 4])
    out = r.outputs["O"]
    assert (out.shm.region, out.shm.byte_size, out.shm.offset, out.binary) == ("out", 16, 0, False)


def test_zero_binary_data_size_is_an_empty_tensor():
    header = b'{"inputs":[{"name":"I","shape":[0],"datatype":"INT32","parameters":{"binary_data_size":0}}]}'
    r = decode_infer(header, len(header), "m", -1, MAX)
    assert r.inputs["I"].raw == b""


@pytest.mark.parametrize("body,message", [
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"INT32"}]}',
     "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
     "'shared_memory_region' in 'parameters'. But no field is set"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"INT32","data":[1],"parameters":{"binary_data_size":4}}]}',
     "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
     "'shared_memory_region' in 'parameters'. But set 'data' 'binary_data_size'"),
    (b'{"parameters":{"triton_x":1},"inputs":[]}',
     "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified."),
    (b'{"parameters":{"k":[1]},"inputs":[]}',
     "parameter 'k' has invalid type. It should be either 'int', 'bool', or 'string'."),
    (b'{"parameters":{"k":null},"inputs":[]}',
     "parameter 'k' has invalid type. It should be either 'int', 'bool', or 'string'."),
    (b'{"inputs":[],"outputs":[{"name":"O","parameters":{"shared_memory_region":"r","classification":2}}]}',
     "Output can't set both 'shared_memory_region' and 'classification'"),
    (b'{"inputs":[],"outputs":[{"name":"O","parameters":{"shared_memory_region":"r","binary_data":true}}]}',
     "Output can't set both 'shared_memory_region' and 'binary_data'"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"FP16","data":[1.0]}]}',
     "receiving FP16 data via JSON is not supported. Please use the binary data format for input I"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"BF16","data":[1.0]}]}',
     "receiving BF16 data via JSON is not supported. Please use the binary data format for input I"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"STRING","data":["a"]}]}',
     "invalid datatype for input I"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"INT32","parameters":{"shared_memory_region":"r"}}]}',
     "'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor 'I'"),
])
def test_invalid_arg_messages(body, message):
    e = _error(body)
    assert (e.code, e.message) == (ErrorCode.INVALID_ARG, message)


@pytest.mark.parametrize("body,message", [
    (b'{"id":5,"inputs":[]}', "Unable to parse 'id': attempt to access JSON non-string as string"),
    (b'{"parameters":{"sequence_id":-1},"inputs":[]}',
     "Unable to parse 'sequence_id': attempt to access JSON non-string as string"),
    (b'{"parameters":{"priority":"1"},"inputs":[]}',
     "Unable to parse 'priority': attempt to access JSON non-unsigned-integer as unsigned-integer"),
    (b'{"parameters":{"sequence_start":1},"inputs":[]}',
     "Unable to parse 'sequence_start': attempt to access JSON non-boolean as boolean"),
    (b'{"parameters":{"binary_data_output":"yes"},"inputs":[]}',
     "Unable to parse 'binary_data_output': attempt to access JSON non-boolean as boolean"),
    (b'{}', "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"),
    (b'[]', "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"),
    (b'{"inputs":{}}', "Unable to parse 'inputs': attempt to access JSON non-array as array"),
    (b'{"inputs":[{"name":"I","shape":[-1],"datatype":"INT32","data":[1]}]}',
     "Unable to parse 'shape': attempt to access JSON non-unsigned-integer as unsigned-integer"),
    (b'{"inputs":[{"shape":[1],"datatype":"INT32","data":[1]}]}',
     "Unable to parse 'name': attempt to access non-existing object member 'name'"),
    (b'{"inputs":[{"name":"I","shape":[16],"datatype":"INT32","data":[1,2]}]}',
     "Unable to parse 'data': Shape does not match true shape of 'data' field"),
    (b'{"inputs":[{"name":"I","shape":[1],"datatype":"INT32","data":[1,2]}]}',
     "Unable to parse 'data': Shape does not match true shape of 'data' field"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"INT32","data":["a","b"]}]}',
     "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"INT32","data":[1.5,2]}]}',
     "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"UINT32","data":[-1,2]}]}',
     "Unable to parse 'data': attempt to access JSON non-unsigned-integer as unsigned-integer"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"BOOL","data":[1,0]}]}',
     "Unable to parse 'data': attempt to access JSON non-boolean as boolean"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"FP32","data":[1,"x"]}]}',
     "Unable to parse 'data': attempt to access JSON non-number as double"),
    (b'{"inputs":[{"name":"I","shape":[2],"datatype":"BYTES","data":["a",1]}]}',
     "Unable to parse JSON bytes array: attempt to access JSON non-string as string"),
    (b'{"inputs":[],"outputs":[{"name":"O","parameters":{"classification":-1}}]}',
     "Unable to set 'classification': attempt to access JSON non-unsigned-integer as unsigned-integer"),
    (b'{"inputs":[],"outputs":{}}', "Unable to parse 'outputs': attempt to access JSON non-array as array"),
    (b'', "failed to parse the request JSON buffer: The document is empty. at 0"),
])
def test_internal_messages(body, message):
    e = _error(body)
    assert (e.code, e.message) == (ErrorCode.INTERNAL, message)


def test_invalid_json_is_a_parse_error():
    e = _error(b"{not json")
    assert e.code is ErrorCode.INTERNAL
    assert e.message.startswith("failed to parse the request JSON buffer: ")


def test_binary_framing_errors():
    assert _error(PERF_HEADER, len(PERF_HEADER) + 100).message == (
        f"inference header size should be in range (0, {len(PERF_HEADER)}), got: {len(PERF_HEADER) + 100}")
    assert _error(PERF_HEADER + ARANGE, len(PERF_HEADER)).message == (
        "unexpected size for input 'INPUT1', expecting 64 additional bytes for model 'm'")
    assert _error(PERF_HEADER + ARANGE + ARANGE[:10], len(PERF_HEADER)).message == (
        "unexpected size for input 'INPUT1', expecting 54 additional bytes for model 'm'")
    assert _error(PERF_BODY + b"x", len(PERF_HEADER)).message == "unexpected additional input data for model 'm'"
    assert _error(PERF_HEADER, None).message == (
        "must specify valid 'Infer-Header-Content-Length' in request header and 'binary_data_size' when "
        "passing inputs in binary data format")


def test_max_input_size():
    e = _error(PERF_BODY, len(PERF_HEADER), max_input_size=100)
    assert e.code is ErrorCode.INVALID_ARG
    assert e.message == (f"request JSON size of {len(PERF_HEADER)} bytes exceeds the maximum allowed input size "
                         "of 100 bytes. Use --http-max-input-size to increase the limit.")
    # binary payloads are not limited, only the header
    assert decode_infer(PERF_BODY, len(PERF_HEADER), "m", -1, len(PERF_HEADER)).inputs
    body = b'{"inputs":[{"name":"I","shape":[1000000],"datatype":"INT32","data":[1]}]}'
    assert "exceeds the maximum allowed input size of 1000" in _error(body, max_input_size=1000).message


def _snapshot(r):
    return (r.model_name, r.model_version, r.id, r.parameters, r.flags, r.binary_default, r.shm_inputs,
            {n: (t.datatype, t.shape, bytes(t.raw)) for n, t in r.inputs.items()},
            None if r.outputs is None else {n: (o.binary, o.classification, o.shm) for n, o in r.outputs.items()})


@pytest.mark.parametrize("header", [
    PERF_HEADER,
    PERF_HEADER[:-1] + b',"id":"a\\u00e9"}',
    b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},'
    b'{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}',
    b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},'
    b'{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"outputs":[]}',
])
def test_a_repeated_header_decodes_the_same_from_its_remembered_plan(header):
    kserve_json._PLANS.clear()
    data = ARANGE + np.ones(16, dtype=np.int32).tobytes()
    first = decode_infer(header + data, len(header), "simple", 1, MAX)
    assert header in kserve_json._PLANS
    again = decode_infer(bytearray(header + data[::-1]), len(header), "other", 2, MAX)
    assert _snapshot(again)[3:] == _snapshot(decode_infer(header + data[::-1], len(header), "x", 0, MAX))[3:]
    assert _snapshot(first)[3:7] == _snapshot(again)[3:7] and again.model_name == "other"
    assert bytes(again.inputs["INPUT0"].raw) == data[::-1][:64]
    # the outputs are the request's own: a caller changing them does not change the next one
    if again.outputs:
        again.outputs["OUTPUT0"].binary = False
        assert decode_infer(header + data, len(header), "simple", 1, MAX).outputs["OUTPUT0"].binary
    # the binary section is still checked against the remembered sizes, with Triton's words
    assert "additional" in _error(header + data + b"x", len(header)).message
    assert "expecting 1 additional bytes" in _error(header + data[:-1], len(header)).message


@pytest.mark.parametrize("header", [
    PERF_HEADER[:-1] + b',"parameters":{"sequence_id":5}}',  # parameters: parsed every time
    b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[' + b",".join([b"1"] * 16) + b']}]}',
    b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","parameters":{"binary_data_size":4}}],'
    b'"outputs":[{"name":"OUTPUT0","parameters":{"classification":2}}]}',
    b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","parameters":{"binary_data_size":4}}],'
    b'"outputs":[{"name":"OUTPUT0","parameters":{"shared_memory_region":"r","shared_memory_byte_size":4}}]}',
])
def test_headers_beyond_the_plain_kind_are_not_remembered(header):
    kserve_json._PLANS.clear()
    size = sum(i["parameters"]["binary_data_size"] for i in json.loads(header)["inputs"] if "parameters" in i)
    decode_infer(header + b"\0" * size, len(header), "m", 1, MAX)
    assert header not in kserve_json._PLANS


def test_a_header_that_fails_is_not_remembered_and_fails_again():
    kserve_json._PLANS.clear()
    header = PERF_HEADER.replace(b'"shape":[1,16]', b'"shape":[1,-16]', 1)
    for _ in range(2):
        assert _error(PERF_BODY.replace(PERF_HEADER, header), len(header)).code is ErrorCode.INTERNAL
    assert not kserve_json._PLANS
