"""Gather request inputs into batch arrays and scatter batch outputs back (Triton's collector/responder).

Rules: pure numpy, no framework imports. A single request passes through untouched (no copy);
several requests are concatenated along dim 0 once; outputs go back as views (slices), never copies.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.request import InferenceRequest
from ..core.tensor import Tensor
from ..errors import invalid_arg


def batch_size(request: InferenceRequest) -> int:
    """The request's batch size: dim 0 of its first input (batching models only)."""
    for tensor in request.inputs.values():
        return tensor.shape[0] if tensor.shape else 1
    return 0


def gather(requests: Sequence[InferenceRequest], name: str) -> np.ndarray:
    """Input `name` of every request, concatenated along the batch dimension."""
    if len(requests) == 1:
        return requests[0].inputs[name].as_numpy()
    arrays = [request.inputs[name].as_numpy() for request in requests]
    try:
        return np.concatenate(arrays, axis=0)
    except ValueError as exc:
        shapes = ", ".join(str(list(a.shape)) for a in arrays)
        raise invalid_arg(f"cannot batch input '{name}' with shapes {shapes}: {exc}") from None


def scatter(array: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Split a batch output along dim 0 into one view per request."""
    if len(sizes) == 1:
        return [array]
    if array.ndim == 0 or array.shape[0] != sum(sizes):
        raise invalid_arg(f"output batch dimension {list(array.shape)[:1]} does not match "
                          f"the total batch size {sum(sizes)}")
    views: list[np.ndarray] = []
    start = 0
    for size in sizes:
        views.append(array[start:start + size])
        start += size
    return views


def bytes_to_str(array: np.ndarray) -> np.ndarray:
    """BYTES elements (bytes) as an object array of str, the form ONNX Runtime wants."""
    out = np.empty(array.shape, dtype=np.object_)
    try:
        out.reshape(-1)[:] = [x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else str(x)
                              for x in array.reshape(-1)]
    except UnicodeDecodeError as exc:
        raise invalid_arg(f"string input is not valid UTF-8: {exc}") from None
    return out


def str_to_bytes(array: np.ndarray) -> np.ndarray:
    """An object array of str (as ONNX Runtime returns strings) as an object array of bytes."""
    out = np.empty(array.shape, dtype=np.object_)
    out.reshape(-1)[:] = [x.encode("utf-8") if isinstance(x, str) else x for x in array.reshape(-1)]
    return out


def reshape_output(shape: Sequence[int], reshape: Sequence[int], dims: Sequence[int],
                   batching: bool) -> list[int]:
    """Report an output with a config `reshape` in its config `dims` (Triton's AddOutput rule).

    The model produced `[batch] + reshape`; the client sees `[batch] + dims`, where each -1 in
    dims takes, in order, the values the model produced at the -1 positions of reshape.
    """
    offset = 1 if batching else 0
    variable = [shape[i + offset] for i, d in enumerate(reshape) if d == -1 and i + offset < len(shape)]
    out = list(shape[:offset])
    for d in dims:
        out.append(variable.pop(0) if d == -1 and variable else d)
    return out


def output_tensor(spec: Any, array: np.ndarray, batching: bool) -> Tensor:
    """An output as the client sees it: a config `reshape` reported in the config's dims."""
    shape = list(array.shape)
    if spec.reshape is not None:
        shape = reshape_output(shape, spec.reshape, spec.dims, batching)
        array = array.reshape(shape)
    return Tensor(spec.name, spec.datatype, shape, array=array)
