import numpy as np
import pytest

from triton_asyncio.codec.classification import classify
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import TritonError


def test_float_values_print_like_std_to_string():
    t = Tensor("OUT", "FP32", [4], array=np.array([0.1, 3.3, 2.0, -1.0], dtype=np.float32))
    out = classify(t, 2, None, batched=False)
    assert (out.datatype, out.shape) == ("BYTES", [2])
    assert out.as_numpy().tolist() == [b"3.300000:1", b"2.000000:2"]


def test_labels_and_k_larger_than_n():
    t = Tensor("OUT", "INT32", [3], array=np.array([5, 10, 7], dtype=np.int32))
    out = classify(t, 10, ["cat", "", "dog"], batched=False)
    assert out.shape == [3]
    assert out.as_numpy().tolist() == [b"10:1", b"7:2:dog", b"5:0:cat"]


def test_batched_rows():
    t = Tensor("OUT", "FP64", [2, 3], array=np.array([[1, 3, 2], [9, 8, 7]], dtype=np.float64))
    out = classify(t, 1, None, batched=True)
    assert out.shape == [2, 1]
    assert out.as_numpy().tolist() == [[b"3.000000:1"], [b"9.000000:0"]]


def test_raw_input_tensor():
    t = Tensor("OUT", "UINT8", [3], raw=bytes([1, 200, 3]))
    assert classify(t, 1, None, batched=False).as_numpy().tolist() == [b"200:1"]


@pytest.mark.parametrize("dtype", ["FP16", "BOOL", "BYTES", "BF16"])
def test_unsupported_types(dtype):
    t = Tensor("OUT", dtype, [1], raw=b"\x00\x00")
    with pytest.raises(TritonError) as e:
        classify(t, 1, None, batched=False)
    assert e.value.message == f"class result not available for output due to unsupported type '{dtype}'"


def test_too_large():
    t = Tensor("OUT", "UINT8", [1_000_001], array=np.zeros(1_000_001, dtype=np.uint8))
    with pytest.raises(TritonError) as e:
        classify(t, 1, None, batched=False)
    assert e.value.message == "classification output tensor too large"
