"""KServe v2 REST JSON <-> core InferenceRequest / InferenceResponse (spec 1.10-1.12, 1.14).

Rules: Triton's parse order and messages (first failure wins): id, parameters, inputs (exactly
one of data / binary_data_size / shared_memory_region each), leftover binary bytes, outputs.
TritonJson type errors are INTERNAL (HTTP 500), as in Triton; request-shape errors are
INVALID_ARG. Model-aware checks (unknown output, shapes, dtypes) belong to server/validate.py.
Stdlib json both ways (NaN/Infinity allowed). Pure: no I/O.
"""
from __future__ import annotations

import json
from typing import Any

from ..core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest, RequestedOutput
from ..core.response import InferenceResponse
from ..core.tensor import Tensor
from ..errors import internal, invalid_arg
from .binary_data import BinaryReader, body_size, decode_raw_infer, header_size, output_chunk
from .classification import classify
from .json_tensor import json_data, tensor_from_json
from .kserve_metadata import (
    encode_model_metadata,
    encode_model_stats,
    encode_repository_index,
    encode_server_metadata,
)
from .shm_params import input_shm_ref, shm_ref

__all__ = [
    "decode_infer", "decode_raw_infer", "encode_infer_response", "parse_json", "encode_json",
    "encode_server_metadata", "encode_model_metadata", "encode_model_stats", "encode_repository_index",
]

_NON_STRING = "attempt to access JSON non-string as string"
_NON_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"
_NON_BOOL = "attempt to access JSON non-boolean as boolean"
_NON_ARRAY = "attempt to access JSON non-array as array"
_UINT64_MAX = 2**64 - 1
_INT64 = (-(2**63), 2**63 - 1)
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DECODE = json.JSONDecoder().decode


def encode_json(obj: Any) -> bytes:
    """Compact JSON as RapidJSON writes it (UTF-8 unescaped; NaN/Infinity bare)."""
    return _DUMPS(obj).encode("utf-8", "surrogateescape")


def parse_json(buffer) -> Any:
    """Parse a JSON document; errors read like TritonJson's (INTERNAL)."""
    if not isinstance(buffer, (bytes, bytearray)):
        buffer = bytes(buffer)
    if not buffer.strip():
        raise internal("failed to parse the request JSON buffer: The document is empty. at 0")
    try:
        # decode here: json.loads on bytes first sniffs for UTF-16/32, which the protocol rules out
        return _DECODE(buffer.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as e:
        pos = getattr(e, "pos", 0)
        raise internal(f"failed to parse the request JSON buffer: {getattr(e, 'msg', e)} at {pos}") from None


def is_uint(v) -> bool:
    return type(v) is int and 0 <= v <= _UINT64_MAX


def _string(obj: dict, key: str, what: str) -> str:
    if key not in obj:
        raise internal(f"Unable to parse '{what}': attempt to access non-existing object member '{key}'")
    v = obj[key]
    if not isinstance(v, str):
        raise internal(f"Unable to parse '{what}': {_NON_STRING}")
    return v


def _uint(v, what: str) -> int:
    if not is_uint(v):
        raise internal(f"Unable to parse '{what}': {_NON_UINT}")
    return v


def _bool(v, what: str) -> bool:
    if type(v) is not bool:
        raise internal(f"Unable to parse '{what}': {_NON_BOOL}")
    return v


def _array(obj: dict, key: str) -> list:
    if key not in obj:
        raise internal(f"Unable to parse '{key}': attempt to access non-existing object member '{key}'")
    v = obj[key]
    if not isinstance(v, list):
        raise internal(f"Unable to parse '{key}': {_NON_ARRAY}")
    return v


_NO_PARAMS: dict = {}


def _params(obj) -> dict:
    p = obj.get("parameters") if type(obj) is dict else None
    return p if type(p) is dict else _NO_PARAMS


# -- request ---------------------------------------------------------------------------------
class _Plan:
    """What a binary infer header decodes to when it holds nothing but an optional id, binary
    inputs and plain outputs: replayed for a byte-identical header, it rebuilds the request
    without parsing. Clients such as perf_analyzer send the same header with every request."""

    __slots__ = ("id", "inputs", "outputs")

    def __init__(self, id: str, inputs: tuple, outputs: tuple | None) -> None:
        self.id = id
        self.inputs = inputs  # ((name, datatype, shape tuple, binary_data_size), ...)
        self.outputs = outputs  # ((name, binary), ...) or None


_PLANS: dict[bytes, _Plan] = {}
_PLANS_MAX = 256  # distinct headers remembered; the table starts afresh when full
_PLAN_HEADER_MAX = 4096  # longer headers are parsed every time (and cost more to key)
_PLAN_KEYS = frozenset(("id", "inputs", "outputs"))


def decode_infer(body, header_length: int | None, model_name: str, model_version: int,
                 max_input_size: int) -> InferenceRequest:
    """A JSON (+ binary) infer body -> InferenceRequest; header_length None means no IHCL."""
    length = header_size(body, header_length, max_input_size)
    key = None
    if header_length is not None and 0 < length <= _PLAN_HEADER_MAX:
        key = bytes(body[:length]) if type(body) is not bytes else body[:length]
        plan = _PLANS.get(key)
        if plan is not None:
            return _replay(plan, body, length, model_name, model_version)
    if length == body_size(body) and isinstance(body, (bytes, bytearray)):
        doc = parse_json(body)
    else:
        doc = parse_json(memoryview(body)[:length])
    obj = doc if type(doc) is dict else _NO_PARAMS  # Triton's Find() on a non-object finds nothing
    request = InferenceRequest(model_name, model_version)
    if "id" in obj:
        if not isinstance(obj["id"], str):
            raise internal(f"Unable to parse 'id': {_NON_STRING}")
        request.id = obj["id"]
    if "parameters" in obj:
        _decode_parameters(request, obj["parameters"])
    reader = BinaryReader(body, length, header_length is not None)
    for item in _array(obj, "inputs"):
        _decode_input(request, item, reader, max_input_size)
    reader.finish(model_name)
    if "outputs" in obj:
        _decode_outputs(request, _array(obj, "outputs"))
    if key is not None:
        _remember(key, obj, request)
    return request


def _remember(key: bytes, obj: dict, request: InferenceRequest) -> None:
    """Keep the plan of a header that decoded without error, if it is of the plain kind."""
    if not obj.keys() <= _PLAN_KEYS or request.shm_inputs or request.shm_outputs:
        return
    inputs = []
    for item in obj["inputs"]:
        # only inputs that took the binary fast path: exactly {"binary_data_size": n} as parameters
        if type(item) is not dict or "data" in item or len(item.get("parameters") or ()) != 1:
            return
        size = item["parameters"].get("binary_data_size")
        if type(size) is not int:
            return
        inputs.append((item["name"], item["datatype"], tuple(item["shape"]), size))
    outputs = None
    if request.outputs is not None:
        if any(o.classification or o.shm is not None for o in request.outputs.values()):
            return
        outputs = tuple((o.name, o.binary) for o in request.outputs.values())
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = _Plan(request.id, tuple(inputs), outputs)


def _replay(plan: _Plan, body, length: int, model_name: str, model_version: int) -> InferenceRequest:
    request = InferenceRequest(model_name, model_version, plan.id)
    reader = BinaryReader(body, length, True)
    inputs = request.inputs
    for name, datatype, shape, size in plan.inputs:
        inputs[name] = Tensor(name, datatype, list(shape), raw=reader.take(name, size, model_name) if size else b"")
    reader.finish(model_name)
    if plan.outputs is not None:
        request.outputs = {name: RequestedOutput(name, binary) for name, binary in plan.outputs}
    return request


def _decode_parameters(request: InferenceRequest, params) -> None:
    if not isinstance(params, dict):
        raise internal("failed to get request params.: attempt to get members for non-object")
    flags = 0
    for key, v in params.items():
        if key == "sequence_id":
            if not is_uint(v) and not isinstance(v, str):
                raise internal(f"Unable to parse 'sequence_id': {_NON_STRING}")
            request.correlation_id = v
        elif key == "sequence_start":
            flags |= FLAG_SEQUENCE_START if _bool(v, key) else 0
        elif key == "sequence_end":
            flags |= FLAG_SEQUENCE_END if _bool(v, key) else 0
        elif key == "priority":
            request.priority = _uint(v, key)
        elif key == "timeout":
            request.timeout_us = _uint(v, key)
        elif key == "binary_data_output":
            request.binary_default = _bool(v, key)
        elif key.startswith("triton_"):
            raise invalid_arg("parameter keys starting with 'triton_' are reserved for Triton usage "
                              "and should not be specified.")
        else:
            request.parameters[key] = _custom_parameter(key, v)
    request.flags = flags


def _custom_parameter(key: str, v):
    if isinstance(v, (str, bool, float)) or (type(v) is int and _INT64[0] <= v <= _INT64[1]):
        return v
    raise invalid_arg(f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or 'string'.")


def _content_error(has_data: bool, has_binary: bool, has_shm: bool) -> str:
    found = [f for f, present in (("'data'", has_data), ("'binary_data_size'", has_binary),
                                  ("'shared_memory_region'", has_shm)) if present]
    head = ("Input must set only one of the following fields: 'data', 'binary_data_size' in "
            "'parameters', 'shared_memory_region' in 'parameters'. But")
    return f"{head} no field is set" if not found else f"{head} set {' '.join(found)}"


def _decode_input(request: InferenceRequest, item, reader: BinaryReader, max_input_size: int) -> None:
    if _decode_binary_input(request, item, reader):
        return
    params = _params(item)
    has_data = isinstance(item, dict) and "data" in item
    has_binary = "binary_data_size" in params
    has_shm = "shared_memory_region" in params
    if has_data + has_binary + has_shm != 1:
        raise invalid_arg(_content_error(has_data, has_binary, has_shm))
    name = _string(item, "name", "name")
    datatype = _string(item, "datatype", "datatype")
    shape = [_uint(d, "shape") for d in _array(item, "shape")]
    if has_binary:
        size = _uint(params["binary_data_size"], "binary_data_size")
        raw = reader.take(name, size, request.model_name) if size else b""
        request.inputs[name] = Tensor(name, datatype, shape, raw=raw)
    elif has_shm:
        if request.shm_inputs is None:
            request.shm_inputs = {}
        request.shm_inputs[name] = input_shm_ref(name, datatype, shape, params)
    else:
        request.inputs[name] = tensor_from_json(name, datatype, shape, item["data"], max_input_size)


def _decode_binary_input(request: InferenceRequest, item, reader: BinaryReader) -> bool:
    """The common case, a well-formed binary input, in one pass; False means "take the slow path",
    which also finds and words any error, so both paths accept and reject exactly the same."""
    if type(item) is not dict or "data" in item:
        return False
    params = item.get("parameters")
    if type(params) is not dict or len(params) != 1:
        return False
    size, name, datatype, shape = (params.get("binary_data_size"), item.get("name"), item.get("datatype"),
                                   item.get("shape"))
    if (type(size) is not int or not 0 <= size <= _UINT64_MAX or type(name) is not str or type(datatype) is not str
            or type(shape) is not list):
        return False
    for d in shape:
        if type(d) is not int or not 0 <= d <= _UINT64_MAX:
            return False
    request.inputs[name] = Tensor(name, datatype, shape, raw=reader.take(name, size, request.model_name)
                                  if size else b"")
    return True


def _decode_outputs(request: InferenceRequest, items: list) -> None:
    outputs: dict[str, RequestedOutput] = {}
    for item in items:
        if type(item) is dict and type(name := item.get("name")) is str:
            params = item.get("parameters")
            if params is None or (type(params) is dict and len(params) == 1
                                  and type(binary := params.get("binary_data")) is bool):
                outputs[name] = RequestedOutput(name, params is not None and binary)
                continue
        params = _params(item)
        if "shared_memory_region" in params:
            if "classification" in params:
                raise invalid_arg("Output can't set both 'shared_memory_region' and 'classification'")
            if "binary_data" in params and _bool(params["binary_data"], "binary_data"):
                raise invalid_arg("Output can't set both 'shared_memory_region' and 'binary_data'")
        name = _string(item, "name", "name")
        classes = params.get("classification", 0)
        if not is_uint(classes):
            raise internal(f"Unable to set 'classification': {_NON_UINT}")
        shm = shm_ref(name, params)
        if shm is not None:
            request.shm_outputs = True
        binary = shm is None and "binary_data" in params and _bool(params["binary_data"], "binary_data")
        outputs[name] = RequestedOutput(name, binary, classes, shm)
    request.outputs = outputs or None


# -- response --------------------------------------------------------------------------------
def encode_infer_response(response: InferenceResponse, request: InferenceRequest,
                          labels: dict[str, list[str]] | None = None, *,
                          max_batch_size: int = 0) -> tuple[list, int | None]:
    """Body chunks [json, bin0, bin1, ...] and the IHCL value (None when nothing is binary).

    Outputs whose RequestedOutput has `shm` set are listed with name/datatype/shape only: the
    server has already written their bytes into the region.
    """
    fast = _encode_all_binary(response, request)
    if fast is not None:
        return fast, len(fast[0])
    requested = request.outputs
    entries: list[dict] = []
    chunks: list = [b""]
    any_binary = False
    for tensor in response.outputs:
        if requested is None:
            wanted = None
        else:
            wanted = requested.get(tensor.name)
            if wanted is None:
                continue
        if wanted is not None and wanted.classification:
            label_list = labels.get(tensor.name) if labels else None
            tensor = classify(tensor, wanted.classification, label_list, max_batch_size > 0)
        entry: dict = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        entries.append(entry)
        if wanted is not None and wanted.shm is not None:
            continue  # bytes already in the region: name, datatype and shape only
        if request.binary_default if wanted is None else wanted.binary:
            raw, size = output_chunk(tensor)
            entry["parameters"] = {"binary_data_size": size}
            if size:
                chunks.append(raw)
            any_binary = True
        else:
            entry["data"] = json_data(tensor)
    doc: dict = {}
    if response.id:
        doc["id"] = response.id
    doc["model_name"] = response.model_name
    doc["model_version"] = response.model_version
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = entries
    chunks[0] = header = encode_json(doc)
    return chunks, (len(header) if any_binary else None)


_OUTPUT_PREFIX: dict[tuple[str, str], bytes] = {}  # (name, datatype) -> b'{"name":..,"datatype":..,"shape":['
_DOC_PREFIX: dict[tuple[str, str], bytes] = {}  # (model, version) -> b'{"model_name":..,"outputs":['
_PREFIXES_MAX = 4096  # per table; a table starts afresh when full


def _json_prefix(table: dict, key: tuple, obj: dict, tail: bytes) -> bytes:
    """encode_json(obj) without its closing brace, then `tail`; remembered in `table`."""
    if len(table) >= _PREFIXES_MAX:
        table.clear()
    prefix = table[key] = encode_json(obj)[:-1] + tail
    return prefix


def _encode_all_binary(response: InferenceResponse, request: InferenceRequest) -> list | None:
    """The common response, every returned output binary, written from cached JSON pieces (made
    by encode_json, so the bytes are the ones the general path writes); None: take that path."""
    if response.parameters:
        return None
    requested = request.outputs
    parts: list[bytes] = []
    chunks: list = [b""]
    for tensor in response.outputs:
        if requested is None:
            if not request.binary_default:
                return None
        else:
            wanted = requested.get(tensor.name)
            if wanted is None:
                continue
            if not wanted.binary or wanted.classification or wanted.shm is not None:
                return None
        prefix = _OUTPUT_PREFIX.get((tensor.name, tensor.datatype)) or _json_prefix(
            _OUTPUT_PREFIX, (tensor.name, tensor.datatype), {"name": tensor.name, "datatype": tensor.datatype},
            b',"shape":[')
        raw, size = output_chunk(tensor)
        if size:
            chunks.append(raw)
        parts.append(b'%s%s],"parameters":{"binary_data_size":%d}}'
                     % (prefix, b",".join([b"%d" % d for d in tensor.shape]), size))
    if not parts:
        return None  # no output at all: rare, let the general path word it
    name, version = response.model_name, response.model_version
    if response.id:  # ids differ per request: not cached
        head = encode_json({"id": response.id, "model_name": name, "model_version": version})[:-1] + b',"outputs":['
    else:
        head = _DOC_PREFIX.get((name, version)) or _json_prefix(
            _DOC_PREFIX, (name, version), {"model_name": name, "model_version": version}, b',"outputs":[')
    chunks[0] = head + b",".join(parts) + b"]}"
    return chunks
