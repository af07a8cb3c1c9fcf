"""Raw (headerless, IHCL: 0) requests."""
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from triton_asyncio.codec.kserve_json import decode_raw_infer
from triton_asyncio.errors import ErrorCode, TritonError


@dataclass
class TS:
    name: str
    datatype: str
    dims: tuple


@dataclass
class Spec:
    max_batch_size: int
    inputs: dict = field(default_factory=dict)


def _spec(max_batch_size, *tensors):
    return Spec(max_batch_size, {t.name: t for t in tensors})


def test_fixed_shape_with_batch_dim():
    body = np.arange(16, dtype=np.float32).tobytes()
    r = decode_raw_infer(body, "m", -1, _spec(8, TS("IN", "FP32", (16,))))
    t = r.inputs["IN"]
    assert (t.shape, t.datatype, r.binary_default, r.outputs) == ([1, 16], "FP32", True, None)
    assert isinstance(t.raw, memoryview) and bytes(t.raw) == body


def test_variable_dim_is_deduced():
    body = np.zeros(10, dtype=np.int64).tobytes()
    r = decode_raw_infer(body, "m", -1, _spec(0, TS("IN", "INT64", (2, -1))))
    assert r.inputs["IN"].shape == [2, 5]


def test_bytes_input_gets_a_length_prefix():
    r = decode_raw_infer(b"hello", "m", -1, _spec(4, TS("S", "BYTES", (1,))))
    t = r.inputs["S"]
    assert t.shape == [1, 1] and bytes(t.raw) == struct.pack("<I", 5) + b"hello"
    assert t.as_numpy().tolist() == [[b"hello"]]


def _error(body, spec, **kw):
    with pytest.raises(TritonError) as e:
        decode_raw_infer(body, "m", -1, spec, **kw)
    assert e.value.code is ErrorCode.INVALID_ARG
    return e.value.message


def test_errors():
    two = _spec(0, TS("A", "FP32", (1,)), TS("B", "FP32", (1,)))
    assert _error(b"1234", two) == ("Raw request must only have 1 input (found 1) to be deduced but got 2 inputs "
                                    "in 'm' model configuration")
    assert _error(b"1234", _spec(0, TS("A", "FP32", (-1, -1)))) == (
        "The shape of the raw input 'A' can not be deduced because there are more than one variable-sized dimension")
    assert "exceeds the maximum allowed input size of 2 bytes" in _error(
        b"1234", _spec(0, TS("A", "FP32", (1,))), max_input_size=2)
