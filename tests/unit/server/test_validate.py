"""validate_request against stand-in specs with the attribute names of repository.normalize."""
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from triton_asyncio.core.request import InferenceRequest, RequestedOutput
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.repository.normalize import _plain_inputs
from triton_asyncio.server.validate import validate_request

FAST = {"on": True}


@pytest.fixture(autouse=True, params=["fast-path", "full-checks"])
def _both_paths(request):
    """Every case runs with the plain-input fast path and without it: same outcome either way."""
    FAST["on"] = request.param == "fast-path"
    yield
    FAST["on"] = True

NOTE = ("NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be "
        "prepended to each input shape. If you want to specify the full shape including the batch dim in "
        "your input dims config, try setting max_batch_size to zero. See the model configuration docs for "
        "more info on max_batch_size.")


@dataclass
class TS:
    name: str
    datatype: str
    dims: tuple
    optional: bool = False
    reshape: tuple | None = None
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False


@dataclass
class Spec:
    name: str
    max_batch_size: int
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    @property
    def plain_inputs(self):
        return _plain_inputs(self.inputs) if FAST["on"] else None


def simple(max_batch_size=8):
    return Spec("simple", max_batch_size,
                {n: TS(n, "INT32", (16,)) for n in ("INPUT0", "INPUT1")},
                {n: TS(n, "INT32", (16,)) for n in ("OUTPUT0", "OUTPUT1")})


def raw(name, shape, datatype="INT32", nbytes=None):
    n = int(np.prod(shape)) * 4 if nbytes is None else nbytes
    return Tensor(name, datatype, list(shape), raw=memoryview(bytes(n)))


def request(*tensors, rid="", outputs=None):
    r = InferenceRequest("simple", 1, id=rid, outputs=outputs)
    r.inputs = {t.name: t for t in tensors}
    return r


def _error(req, spec):
    with pytest.raises(TritonError) as e:
        validate_request(req, spec)
    assert e.value.code is ErrorCode.INVALID_ARG
    return e.value.message


def test_valid_request_passes():
    validate_request(request(raw("INPUT0", [3, 16]), raw("INPUT1", [3, 16])), simple())
    arr = Tensor("INPUT1", "INT32", [1, 16], array=np.zeros((1, 16), np.int32))
    validate_request(request(raw("INPUT0", [1, 16]), arr), simple())


def test_unknown_output():
    req = request(raw("INPUT0", [1, 16]), raw("INPUT1", [1, 16]), rid="7",
                  outputs={"NOPE": RequestedOutput("NOPE")})
    assert _error(req, simple()) == "[request id: 7] unexpected inference output 'NOPE' for model 'simple'"


def test_input_count_messages():
    assert _error(request(raw("INPUT0", [1, 16])), simple()) == (
        "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) "
        "['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s).")
    assert _error(request(), simple()).endswith(
        "Got input(s) [], but missing required input(s) ['INPUT0','INPUT1']. Please provide all required input(s).")
    spec = simple()
    spec.inputs["OPT"] = TS("OPT", "INT32", (16,), optional=True)
    assert _error(request(raw("OPT", [1, 16])), spec) == (
        "[request id: <id_unknown>] expected number of inputs between 2 and 3 but got 1 inputs for model "
        "'simple'. Got input(s) ['OPT'], but missing required input(s) ['INPUT0','INPUT1']. "
        "Please provide all required input(s).")
    extra = request(raw("INPUT0", [1, 16]), raw("INPUT1", [1, 16]), raw("X", [1, 16]))
    assert "missing required input(s) ]." in _error(extra, simple())  # Triton's own rendering


def test_unknown_input_has_no_prefix():
    req = request(raw("INPUT0", [1, 16]), raw("BOGUS", [1, 16]), rid="1")
    assert _error(req, simple()) == "unexpected inference input 'BOGUS' for model 'simple'"
    assert _error(req, simple(0)) == "unexpected inference input 'BOGUS' for model 'simple'"


def test_batch_rules():
    assert _error(request(raw("INPUT0", []), raw("INPUT1", [1, 16])), simple()) == (
        "[request id: <id_unknown>] input 'INPUT0' has no shape but model requires batch dimension for 'simple'")
    assert _error(request(raw("INPUT0", [1, 16]), raw("INPUT1", [2, 16])), simple()) == (
        "[request id: <id_unknown>] input 'INPUT1' batch size does not match other inputs for 'simple'")
    assert _error(request(raw("INPUT0", [9, 16]), raw("INPUT1", [9, 16])), simple()) == (
        "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'simple'")


def test_dtype():
    req = request(raw("INPUT0", [1, 16], "FP32"), raw("INPUT1", [1, 16]))
    assert _error(req, simple()) == (
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'")
    req = request(raw("INPUT0", [1, 16], "STRING"), raw("INPUT1", [1, 16]))
    assert "data-type is '<invalid>'" in _error(req, simple())


def test_shape_messages():
    req = request(raw("INPUT0", [1, 15]), raw("INPUT1", [1, 16]))
    assert _error(req, simple()) == (
        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'simple'. "
        "Expected [-1,16], got [1,15]. " + NOTE)
    req = request(raw("INPUT0", [1, 16]), raw("INPUT1", [16]))
    assert _error(req, simple(0)) == (
        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'simple'. "
        "Expected [16], got [1,16]. ")
    req = request(raw("INPUT0", [1, -1], nbytes=64), raw("INPUT1", [1, 16]))
    assert _error(req, simple()) == (
        "[request id: <id_unknown>] All input dimensions should be specified for input 'INPUT0' for model "
        "'simple', got [1,-1]")


def test_variable_dims_accept_any_size():
    spec = simple()
    spec.inputs["INPUT0"].dims = (-1,)
    validate_request(request(raw("INPUT0", [2, 5]), raw("INPUT1", [2, 16])), spec)


def test_byte_size_mismatch():
    req = request(raw("INPUT0", [1, 16], nbytes=60), raw("INPUT1", [1, 16]))
    assert _error(req, simple()) == (
        "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model 'simple'. "
        "Expected 64, got 60")


def _strings(*items):
    return b"".join(struct.pack("<I", len(s)) + s for s in items)


def test_bytes_inputs_are_walked():
    spec = Spec("s", 0, {"S": TS("S", "BYTES", (2,))}, {})
    validate_request(request(Tensor("S", "BYTES", [2], raw=_strings(b"a", b"bc"))), spec)
    validate_request(request(Tensor("S", "BYTES", [2], array=np.array([b"a", b"b"], dtype=object))), spec)
    where = "for inference input 'S' for model 's'"
    assert _error(request(Tensor("S", "BYTES", [2], raw=_strings(b"a"))), spec) == (
        f"[request id: <id_unknown>] expected 2 string elements {where}, got 1")
    assert _error(request(Tensor("S", "BYTES", [2], raw=_strings(b"a", b"b", b"c"))), spec) == (
        f"[request id: <id_unknown>] unexpected number of string elements 3 {where}, expecting 2")
    assert _error(request(Tensor("S", "BYTES", [2], raw=_strings(b"a") + b"\x01\x00")), spec).startswith(
        f"[request id: <id_unknown>] incomplete string length indicator {where}")
    assert _error(request(Tensor("S", "BYTES", [2], raw=_strings(b"a") + b"\x09\x00\x00\x00ab")), spec).startswith(
        f"[request id: <id_unknown>] incomplete string data {where}")


def test_reshape_applied_after_validation():
    spec = Spec("r", 4, {"X": TS("X", "FP32", (-1, 4), reshape=(2, -1, 2))}, {})
    t = Tensor("X", "FP32", [3, 5, 4], array=np.zeros((3, 5, 4), np.float32))
    validate_request(request(t), spec)
    assert t.shape == [3, 2, 5, 2] and t.array.shape == (3, 2, 5, 2)
    spec = Spec("r", 0, {"Y": TS("Y", "INT32", (1, 16), reshape=(16,))}, {})
    y = raw("Y", [1, 16])
    validate_request(request(y), spec)
    assert y.shape == [16]


def test_shape_tensor_skips_batch_rules():
    spec = Spec("st", 8, {"D": TS("D", "INT32", (16,)), "SH": TS("SH", "INT32", (2,), is_shape_tensor=True)}, {})
    validate_request(request(raw("D", [3, 16]), raw("SH", [2])), spec)
