"""JSON `data` arrays <-> tensors (spec 1.12), numpy-vectorised for numeric types.

Rules: `data` may be flat or nested; exactly prod(shape) leaves are required (else INTERNAL
"Unable to parse 'data': Shape does not match true shape of 'data' field", as Triton). Type
errors reuse TritonJson's INTERNAL messages. FP16/BF16 are binary-only. BYTES elements are JSON
strings whose UTF-8 bytes are the element. Output numbers come from `ndarray.tolist()` (FP32
widened to double, as Triton prints it). Pure: no I/O.
"""
from __future__ import annotations

import numpy as np

from ..core.datatype import ELEMENT_SIZE, NUMPY_DTYPE, element_count
from ..core.tensor import Tensor, serialize_bytes
from ..errors import internal, invalid_arg

SHAPE_MISMATCH = "Unable to parse 'data': Shape does not match true shape of 'data' field"
_NON_INT = "attempt to access JSON non-signed-integer as signed-integer"
_NON_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"
_NON_NUMBER = "attempt to access JSON non-number as double"
_NON_BOOL = "attempt to access JSON non-boolean as boolean"
_NON_STRING = "attempt to access JSON non-string as string"
_SIGNED = frozenset(("INT8", "INT16", "INT32", "INT64"))
_UNSIGNED = frozenset(("UINT8", "UINT16", "UINT32", "UINT64"))


def size_limit_message(what: str, size: int, limit: int) -> str:
    return (f"{what} of {size} bytes exceeds the maximum allowed input size of {limit} bytes. "
            "Use --http-max-input-size to increase the limit.")


def flatten(data) -> list:
    """Leaves of an arbitrarily nested list, in order (the slow path for ragged nesting)."""
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _as_array(data: list) -> np.ndarray:
    try:
        return np.asarray(data)
    except ValueError:  # ragged nesting: numpy refuses, Triton just walks the leaves
        return np.asarray(flatten(data))


def _check_kind(arr: np.ndarray, datatype: str) -> None:
    kind = arr.dtype.kind
    if datatype in _SIGNED:
        ok, message = kind == "i", _NON_INT
    elif datatype in _UNSIGNED:
        ok = kind == "u" or (kind == "i" and (arr.size == 0 or arr.min() >= 0))
        message = _NON_UINT
    elif datatype == "BOOL":
        ok, message = kind == "b", _NON_BOOL
    else:  # FP32, FP64
        ok, message = kind in "iuf", _NON_NUMBER
    if not ok:
        raise internal(f"Unable to parse 'data': {message}")


def tensor_from_json(name: str, datatype: str, shape: list[int], data, max_input_size: int) -> Tensor:
    """An input tensor from its JSON `data` member (numeric types become numpy arrays)."""
    count = element_count(shape)
    if count == 0:
        return Tensor(name, datatype, shape, raw=b"")
    if datatype in ("FP16", "BF16"):
        raise invalid_arg(f"receiving {datatype} data via JSON is not supported. "
                          f"Please use the binary data format for input {name}")
    if datatype not in ELEMENT_SIZE:
        raise invalid_arg(f"invalid datatype for input {name}")
    if not isinstance(data, list):
        raise internal("Unable to parse 'data': attempt to access JSON non-array as array")
    if datatype == "BYTES":
        return _bytes_from_json(name, shape, data, count, max_input_size)
    nbytes = count * ELEMENT_SIZE[datatype]
    if nbytes > max_input_size:
        raise invalid_arg(size_limit_message(f"input '{name}' JSON data size", nbytes, max_input_size))
    arr = _as_array(data)
    if arr.size != count:
        raise internal(SHAPE_MISMATCH)
    _check_kind(arr, datatype)
    return Tensor(name, datatype, shape, array=arr.astype(NUMPY_DTYPE[datatype], copy=False).reshape(shape))


def _bytes_from_json(name: str, shape: list[int], data: list, count: int, max_input_size: int) -> Tensor:
    leaves = flatten(data)
    items: list[bytes] = []
    total = 0
    for s in leaves:
        if not isinstance(s, str):
            raise internal(f"Unable to parse JSON bytes array: {_NON_STRING}")
        b = s.encode("utf-8", "surrogatepass")
        total += len(b) + 4
        items.append(b)
    if total > max_input_size:
        raise invalid_arg(size_limit_message(f"input '{name}' JSON data size", total, max_input_size))
    arr = np.empty(len(items), dtype=np.object_)
    arr[:] = items
    if len(items) != count:  # Triton lets this through; validation reports the element count
        return Tensor(name, "BYTES", shape, raw=serialize_bytes(arr))
    return Tensor(name, "BYTES", shape, array=arr.reshape(shape))


def json_data(tensor: Tensor) -> list:
    """The flat, row-major JSON `data` list for an output tensor."""
    datatype = tensor.datatype
    if datatype in ("FP16", "BF16"):
        raise invalid_arg(f"sending {datatype} data via JSON is not supported. "
                          "Please use the binary data format for output")
    flat = tensor.as_numpy().reshape(-1)
    if datatype != "BYTES":
        return flat.tolist()
    return [b.decode("utf-8", "surrogateescape") if isinstance(b, (bytes, bytearray)) else str(b)
            for b in flat.tolist()]
