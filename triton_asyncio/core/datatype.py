"""KServe/Triton datatypes: wire names, config names, element sizes and numpy dtypes.

Rules: plain dicts keyed by the wire string ("INT32"), because the hot path has the string
in hand already; no enum lookups per request. BYTES has no fixed size (None).
"""
from __future__ import annotations

import numpy as np

from ..errors import invalid_arg

try:  # numpy has no bfloat16; ml_dtypes (an onnx dependency) does, when installed.
    import ml_dtypes as _ml_dtypes

    _BF16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BF16 = None

DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)

ELEMENT_SIZE: dict[str, int | None] = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8,
    "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
    "FP16": 2, "FP32": 4, "FP64": 8, "BF16": 2, "BYTES": None,
}

NUMPY_DTYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
if _BF16 is not None:
    NUMPY_DTYPE["BF16"] = _BF16

_FROM_NUMPY: dict[np.dtype, str] = {v: k for k, v in NUMPY_DTYPE.items() if k != "BYTES"}


def config_to_wire(config_type: str) -> str:
    """`TYPE_INT32` -> `INT32`; `TYPE_STRING` -> `BYTES`; unknown -> `` (Triton's INVALID)."""
    if config_type == "TYPE_STRING":
        return "BYTES"
    name = config_type[5:] if config_type.startswith("TYPE_") else ""
    return name if name in ELEMENT_SIZE else ""


def wire_to_config(datatype: str) -> str:
    """`INT32` -> `TYPE_INT32`; `BYTES` -> `TYPE_STRING`."""
    if datatype == "BYTES":
        return "TYPE_STRING"
    return "TYPE_" + datatype if datatype in ELEMENT_SIZE else "TYPE_INVALID"


def from_numpy(dtype: np.dtype) -> str:
    """numpy dtype -> wire datatype; object/str/bytes arrays are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _FROM_NUMPY[dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype]
    except KeyError:
        raise invalid_arg(f"unsupported numpy dtype {dtype}") from None


def to_numpy(datatype: str) -> np.dtype:
    try:
        return NUMPY_DTYPE[datatype]
    except KeyError:
        raise invalid_arg(f"invalid datatype '{datatype}'") from None


def element_count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def byte_size(datatype: str, shape) -> int | None:
    """Expected byte size of a fixed-size tensor; None for BYTES."""
    size = ELEMENT_SIZE.get(datatype)
    if size is None:
        return None
    return size * element_count(shape)
