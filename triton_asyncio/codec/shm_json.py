"""The shared-memory extension's JSON bodies (register requests, status arrays), sans-I/O.

Rules: Triton's member names and messages (spec 10.2-10.4); a body is parsed here and handed to
the server's region table as plain values.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from ..errors import invalid_arg
from .kserve_json import encode_json, parse_json

_NON_STRING = "attempt to access JSON non-string as string"
_NON_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"
_NON_INT = "attempt to access JSON non-signed-integer as signed-integer"
_NON_OBJECT = "attempt to access JSON non-object as object"


def _object(body) -> dict:
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise invalid_arg(f"Unable to parse the register request: {_NON_OBJECT}")
    return doc


def _uint(doc: dict, key: str, default: int | None = None) -> int:
    if key not in doc:
        if default is None:
            raise invalid_arg(f"Shared memory register request has no '{key}' field")
        return default
    v = doc[key]
    if type(v) is not int or v < 0 or v >= 2**64:
        raise invalid_arg(f"Unable to parse '{key}': {_NON_UINT}")
    return v


def parse_system_register(body) -> tuple[str, int, int]:
    """(key, offset, byte_size) from `{"key", "offset"?, "byte_size"}`."""
    doc = _object(body)
    if "key" not in doc:
        raise invalid_arg("Shared memory register request has no 'key' field")
    key = doc["key"]
    if not isinstance(key, str):
        raise invalid_arg(f"Unable to parse 'key': {_NON_STRING}")
    offset = _uint(doc, "offset", 0)
    return key, offset, _uint(doc, "byte_size")


def parse_cuda_register(body) -> tuple[bytes, int, int]:
    """(raw handle, device_id, byte_size) from `{"raw_handle": {"b64"}, "device_id", "byte_size"}`."""
    doc = _object(body)
    if "raw_handle" not in doc:
        raise invalid_arg("Shared memory register request has no 'raw_handle' field")
    handle = doc["raw_handle"]
    if not isinstance(handle, dict) or not isinstance(handle.get("b64"), str):
        raise invalid_arg(f"Unable to parse 'b64': {_NON_STRING}")
    try:
        raw = base64.b64decode(handle["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_arg("'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t") from None
    if "device_id" not in doc:
        raise invalid_arg("Shared memory register request has no 'device_id' field")
    device_id = doc["device_id"]
    if type(device_id) is not int:
        raise invalid_arg(f"Unable to parse 'device_id': {_NON_INT}")
    return raw, device_id, _uint(doc, "byte_size")


def encode_system_status(regions: Iterable[Any]) -> bytes:
    return encode_json([{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                        for r in regions])


def encode_cuda_status(regions: Iterable[Any]) -> bytes:
    return encode_json([{"name": r.name, "device_id": r.device_id, "byte_size": r.byte_size} for r in regions])
