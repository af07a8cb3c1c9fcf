"""encode_infer_response: byte literals, and tritonclient reading what we write (the oracle)."""
import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from triton_asyncio.codec.kserve_json import decode_infer, encode_infer_response
from triton_asyncio.core.request import InferenceRequest, RequestedOutput, ShmRef
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import TritonError

PARSE = httpclient.InferenceServerClient.parse_response_body


def _response(*tensors, rid=""):
    return InferenceResponse("simple", "1", id=rid, outputs=list(tensors))


def _outputs():
    return (Tensor("OUTPUT0", "INT32", [1, 4], array=np.arange(4, dtype=np.int32).reshape(1, 4)),
            Tensor("OUTPUT1", "FP32", [2], array=np.array([0.1, np.nan], dtype=np.float32)))


def _join(chunks):
    return b"".join(bytes(c) for c in chunks)


def test_json_response_byte_literal():
    request = InferenceRequest("simple", 1, id="42")
    chunks, ihcl = encode_infer_response(_response(*_outputs(), rid="42"), request)
    assert ihcl is None and len(chunks) == 1
    assert chunks[0] == (b'{"id":"42","model_name":"simple","model_version":"1","outputs":['
                         b'{"name":"OUTPUT0","datatype":"INT32","shape":[1,4],"data":[0,1,2,3]},'
                         b'{"name":"OUTPUT1","datatype":"FP32","shape":[2],"data":[0.10000000149011612,NaN]}]}')


def test_binary_default_for_unlisted_outputs_and_tritonclient_reads_it():
    request = InferenceRequest("simple", 1, binary_default=True)
    out0, out1 = _outputs()
    chunks, ihcl = encode_infer_response(_response(out0, out1), request)
    assert ihcl == len(chunks[0]) and len(chunks) == 3
    assert isinstance(chunks[1], memoryview)  # no copy of the output array
    header = json.loads(chunks[0])
    assert "id" not in header
    assert [o["parameters"] for o in header["outputs"]] == [{"binary_data_size": 16}, {"binary_data_size": 8}]
    result = PARSE(_join(chunks), header_length=ihcl)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), out0.array)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), out1.array)


def test_only_requested_outputs_each_with_its_own_flag():
    request = InferenceRequest("simple", 1, binary_default=True,
                               outputs={"OUTPUT1": RequestedOutput("OUTPUT1", binary=False)})
    chunks, ihcl = encode_infer_response(_response(*_outputs()), request)
    assert ihcl is None
    header = json.loads(chunks[0])
    assert [o["name"] for o in header["outputs"]] == ["OUTPUT1"]
    assert PARSE(chunks[0]).as_numpy("OUTPUT0") is None


def test_mixed_json_and_binary_roundtrip_through_tritonclient_request():
    o0 = httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)
    o1 = httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)
    i0 = httpclient.InferInput("INPUT0", [1], "INT32")
    i0.set_data_from_numpy(np.array([1], dtype=np.int32))
    body, size = httpclient.InferenceServerClient.generate_request_body([i0], outputs=[o0, o1], request_id="r")
    request = decode_infer(body, size, "simple", 1, 2**26)
    out0, out1 = _outputs()
    chunks, ihcl = encode_infer_response(_response(out0, out1, rid="r"), request)
    result = PARSE(_join(chunks), header_length=ihcl)
    assert result.get_response()["id"] == "r"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), out0.array)
    got1 = result.as_numpy("OUTPUT1")
    assert got1[0] == np.float32(0.1) and np.isnan(got1[1])


def test_bytes_and_bool_outputs():
    strings = np.array([b"ab", b"", "\u00e9".encode()], dtype=np.object_)
    flags = np.array([True, False])
    tensors = (Tensor("S", "BYTES", [3], array=strings), Tensor("B", "BOOL", [2], array=flags))
    request = InferenceRequest("m", 1)
    chunks, _ = encode_infer_response(_response(*tensors), request)
    assert b'"data":["ab","","\xc3\xa9"]' in chunks[0] and b'"data":[true,false]' in chunks[0]
    request.binary_default = True
    chunks, ihcl = encode_infer_response(_response(*tensors), request)
    result = PARSE(_join(chunks), header_length=ihcl)
    assert result.as_numpy("S").tolist() == strings.tolist()
    assert result.as_numpy("B").tolist() == [True, False]


def test_zero_length_binary_output_contributes_no_chunk():
    request = InferenceRequest("m", 1, binary_default=True)
    chunks, ihcl = encode_infer_response(_response(Tensor("E", "INT32", [0], raw=b"")), request)
    assert len(chunks) == 1 and ihcl == len(chunks[0])
    assert json.loads(chunks[0])["outputs"][0]["parameters"] == {"binary_data_size": 0}


def test_shm_output_has_no_data():
    request = InferenceRequest("m", 1, outputs={"OUTPUT0": RequestedOutput("OUTPUT0", shm=ShmRef("r", 16))})
    chunks, ihcl = encode_infer_response(_response(_outputs()[0]), request)
    assert ihcl is None
    assert json.loads(chunks[0])["outputs"] == [{"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 4]}]


def test_classification_output_with_labels():
    scores = Tensor("PROB", "FP32", [1, 3], array=np.array([[0.2, 0.7, 0.1]], dtype=np.float32))
    request = InferenceRequest("m", 1, outputs={"PROB": RequestedOutput("PROB", classification=2)})
    chunks, _ = encode_infer_response(_response(scores), request, {"PROB": ["a", "b", "c"]}, max_batch_size=8)
    out = json.loads(chunks[0])["outputs"][0]
    assert out == {"name": "PROB", "datatype": "BYTES", "shape": [1, 2],
                   "data": ["0.700000:1:b", "0.200000:0:a"]}
    request.outputs["PROB"].binary = True
    chunks, ihcl = encode_infer_response(_response(scores), request, None)
    result = PARSE(_join(chunks), header_length=ihcl)
    assert result.as_numpy("PROB").tolist() == [b"0.700000:1", b"0.200000:0"]


def test_fp16_json_output_is_refused():
    request = InferenceRequest("m", 1)
    half = Tensor("H", "FP16", [1], array=np.array([1], dtype=np.float16))
    with pytest.raises(TritonError) as e:
        encode_infer_response(_response(half), request)
    assert e.value.message == ("sending FP16 data via JSON is not supported. "
                               "Please use the binary data format for output")
    request.binary_default = True
    chunks, ihcl = encode_infer_response(_response(half), request)
    assert PARSE(_join(chunks), header_length=ihcl).as_numpy("H").tolist() == [1.0]


def test_response_parameters():
    response = _response()
    response.parameters = {"k": "v", "n": 1}
    chunks, _ = encode_infer_response(response, InferenceRequest("m", 1))
    assert chunks[0] == b'{"model_name":"simple","model_version":"1","parameters":{"k":"v","n":1},"outputs":[]}'


@pytest.mark.parametrize("rid", ["", "r\u00e9\"1"])
@pytest.mark.parametrize("names", [("OUTPUT0", "OUTPUT1"), ('we"ird\\\u2603', "x")])
def test_all_binary_fast_path_writes_the_general_paths_bytes(rid, names, monkeypatch):
    import triton_asyncio.codec.kserve_json as kj

    tensors = [Tensor(n, "FP32", [2, 3], array=np.full((2, 3), i, np.float32)) for i, n in enumerate(names)]
    tensors.append(Tensor("EMPTY", "INT32", [0], array=np.zeros(0, np.int32)))
    for outputs, binary_default in (({n: RequestedOutput(n, True) for n in names}, False), (None, True)):
        request = InferenceRequest("simple", outputs=outputs, binary_default=binary_default)
        response = InferenceResponse('m"odel', "3", id=rid, outputs=tensors)
        fast, fast_len = encode_infer_response(response, request)
        assert kj._encode_all_binary(response, request) is not None
        monkeypatch.setattr(kj, "_encode_all_binary", lambda *a: None)
        general, general_len = encode_infer_response(response, request)
        monkeypatch.undo()
        assert (fast_len, _join(fast)) == (general_len, _join(general))
        parsed = PARSE(_join(fast), header_length=fast_len)
        assert parsed.as_numpy(names[1]).tolist() == [[1.0] * 3] * 2


def test_all_binary_fast_path_declines_json_classification_and_parameters():
    import triton_asyncio.codec.kserve_json as kj

    t = Tensor("OUTPUT0", "INT32", [1], array=np.ones(1, np.int32))
    assert kj._encode_all_binary(_response(t), InferenceRequest("m")) is None  # JSON by default
    assert kj._encode_all_binary(_response(t), InferenceRequest("m", outputs={"OUTPUT0": RequestedOutput(
        "OUTPUT0", True, classification=1)})) is None
    response = _response(t)
    response.parameters = {"p": 1}
    assert kj._encode_all_binary(response, InferenceRequest("m", binary_default=True)) is None
