"""Classification extension: an output replaced by its top-K "value:index[:label]" strings.

Rules: Triton's semantics (spec 1.14): BYTES result of shape [batch, min(K, n)] for batching
models (batch = first dim of the output) else [min(K, n)]; values by descending value (tie
order unspecified); floats print as C++ std::to_string ("%f"), integers plainly; label from the
output's label file when the index has a non-empty line. Pure numpy; no I/O.
"""
from __future__ import annotations

import numpy as np

from ..core.tensor import Tensor
from ..errors import invalid_arg

MAX_ELEMENTS = 1_000_000
_SUPPORTED = frozenset(("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                        "FP32", "FP64"))


def _format_value(value, is_float: bool) -> str:
    return f"{value:f}" if is_float else str(value)


def _entry(value, index: int, labels: list[str] | None, is_float: bool) -> bytes:
    text = f"{_format_value(value, is_float)}:{index}"
    if labels is not None and index < len(labels) and labels[index]:
        text = f"{text}:{labels[index]}"
    return text.encode("utf-8")


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values along the last axis, largest first."""
    order = np.argsort(values, axis=-1, kind="stable")[..., ::-1]
    return order[..., :k]


def classify(tensor: Tensor, k: int, labels: list[str] | None, batched: bool) -> Tensor:
    """The BYTES tensor that replaces `tensor` when the request asks for `classification: k`."""
    if tensor.datatype not in _SUPPORTED:
        raise invalid_arg(f"class result not available for output due to unsupported type '{tensor.datatype}'")
    array = tensor.as_numpy()
    if array.size > MAX_ELEMENTS:
        raise invalid_arg("classification output tensor too large")
    batch = int(array.shape[0]) if batched and array.ndim > 0 else None
    n = array.size // batch if batch else array.size
    rows = array.reshape(batch if batch is not None else 1, n)
    kk = min(k, rows.shape[1])
    picked = top_k(rows, kk)
    is_float = array.dtype.kind == "f"
    out = np.empty((rows.shape[0], kk), dtype=np.object_)
    for r in range(rows.shape[0]):
        row, idx = rows[r], picked[r]
        out[r] = [_entry(v, int(i), labels, is_float) for v, i in zip(row[idx].tolist(), idx.tolist(), strict=True)]
    shape = [batch, kk] if batch is not None else [kk]
    return Tensor(tensor.name, "BYTES", shape, array=out.reshape(shape))
