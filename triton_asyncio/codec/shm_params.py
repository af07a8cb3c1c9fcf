"""`shared_memory_region/offset/byte_size` parameters -> ShmRef placeholders (never resolved here).

Rules: the region is looked up and bounds-checked by the server's shm registry; this module only
parses the three parameters with Triton's messages (spec 1.10 step 7-8, 10.5). Pure: no I/O.
"""
from __future__ import annotations

from ..core.request import ShmRef
from ..errors import internal, invalid_arg

_NON_STRING = "attempt to access JSON non-string as string"
_NON_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"


def _uint(params: dict, key: str) -> int:
    v = params.get(key, 0)
    if type(v) is not int or v < 0 or v >= 2**64:
        raise internal(f"Unable to parse '{key}': {_NON_UINT}")
    return v


def shm_ref(name: str, params: dict) -> ShmRef | None:
    """The region a tensor names, or None when it names none."""
    if "shared_memory_region" not in params:
        if "shared_memory_offset" in params:
            raise invalid_arg(f"'shared_memory_offset' can not be specified without "
                              f"'shared_memory_region' parameter for tensor '{name}'")
        return None
    region = params["shared_memory_region"]
    if not isinstance(region, str):
        raise internal(f"Unable to parse 'shared_memory_region': {_NON_STRING}")
    if "shared_memory_byte_size" not in params:
        raise invalid_arg(f"'shared_memory_byte_size' must be specified along with "
                          f"'shared_memory_region' parameter for tensor '{name}'")
    return ShmRef(region, _uint(params, "shared_memory_byte_size"), _uint(params, "shared_memory_offset"))


def input_shm_ref(name: str, datatype: str, shape: list[int], params: dict) -> ShmRef:
    ref = shm_ref(name, params)
    assert ref is not None  # callers check for the region first
    ref.datatype, ref.shape = datatype, shape
    return ref
