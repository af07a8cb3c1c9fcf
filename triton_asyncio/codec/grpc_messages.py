"""gRPC messages (grpc_service.proto) <-> core InferenceRequest / InferenceResponse (spec 2.2-2.5).

Rules: Triton's order and messages (src/grpc/infer_handler.cc): request parameters, inputs (shm,
else typed `contents`, else the next `raw_input_contents` entry), then requested outputs. Raw
inputs stay the `bytes` objects upb hands out (no further copy). Infer responses are written
by hand, field by field as upb would write them, so output tensors are joined once instead of
copied three times through a message; everything else goes through the generated messages.
Model-aware checks (shapes, dtypes, unknown outputs) belong to server/validate.py. Pure: no I/O.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from google.protobuf.message import DecodeError

from ..core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest, RequestedOutput, ShmRef
from ..core.response import InferenceResponse
from ..core.stats import Duration, ModelStats
from ..core.tensor import Tensor
from ..errors import ErrorCode, TritonError, internal, invalid_arg
from ..pb import grpc_service_pb2 as pb
from .classification import classify

__all__ = [
    "parse_infer", "parse_version", "decode_infer", "encode_infer_response", "encode_stream_response",
    "encode_stream_error", "server_metadata", "model_metadata", "model_config", "model_statistics",
    "repository_index",
]

MAX_MESSAGE_SIZE = 2**31 - 1
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"
_U64 = 2**64 - 1
_RESERVED = ("parameter keys starting with 'triton_' are reserved for Triton usage. Only the following "
             f"keys starting with 'triton_' are allowed: {EMPTY_FINAL_RESPONSE}")
_STOL = re.compile(r"[ \t\n\v\f\r]*[+-]?\d+")
_LEN = struct.Struct("<I")
_FROM_STRING = pb.ModelInferRequest.FromString


# -- request ---------------------------------------------------------------------------------
def parse_infer(buffer) -> pb.ModelInferRequest:
    try:
        return _FROM_STRING(buffer)
    except DecodeError:
        raise internal("failed to parse the ModelInferRequest message") from None


def parse_version(text: str) -> int:
    """Triton's GetModelVersionFromString: "" is -1 (latest); std::stol semantics otherwise."""
    if not text:
        return -1
    if text.isdigit():
        return int(text)
    match = _STOL.match(text)
    if match is None or not -(2**63) <= int(match.group()) < 2**63:
        raise invalid_arg(f"failed to get model version from specified version string '{text}' "
                          "(details: stol), version should be an integral value > 0")
    version = int(match.group())
    if version < 0:
        raise invalid_arg(f"invalid model version specified '{text}' , version should be an integral value > 0")
    return version


def decode_infer(msg: pb.ModelInferRequest, model_version: int | None = None) -> InferenceRequest:
    """A parsed ModelInferRequest -> InferenceRequest (model_version: parsed already, or None)."""
    model_name = msg.model_name
    if model_version is None:
        model_version = parse_version(msg.model_version)
    request = InferenceRequest(model_name, model_version, msg.id)
    if len(msg.parameters):
        _decode_parameters(request, msg.parameters)
    raws = msg.raw_input_contents[:]
    inputs = request.inputs
    items = msg.inputs[:]
    index = 0
    for item in items:
        name = item.name
        if len(item.parameters) and (shm := _shm_ref(item)) is not None:
            if item.HasField("contents"):
                raise invalid_arg(f"unexpected 'content' provided when using shared memory for input "
                                  f"tensor '{name}' for model '{model_name}'")
            shm.datatype, shm.shape = item.datatype, item.shape[:]
            if request.shm_inputs is None:
                request.shm_inputs = {}
            request.shm_inputs[name] = shm
        elif item.HasField("contents"):
            if raws:
                raise invalid_arg(f"contents field must not be specified when using raw_input_contents "
                                  f"for '{name}' for model '{model_name}'")
            inputs[name] = Tensor(name, item.datatype, item.shape[:], _typed_raw(item, model_name))
        elif index < len(raws):
            inputs[name] = Tensor(name, item.datatype, item.shape[:], raws[index])  # positional: cheaper
            index += 1
        else:
            raise invalid_arg(f"unable to find data for input tensor '{name}' for model '{model_name}' in request.")
    if len(inputs) != len(items):
        _check_duplicates(items)
    if len(msg.outputs):
        request.outputs = outputs = _decode_outputs(msg.outputs)
        request.shm_outputs = any(o.shm is not None for o in outputs.values())
    return request


def _check_duplicates(items) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise invalid_arg(f"input '{item.name}' already exists in request")
        seen.add(item.name)


def _decode_parameters(request: InferenceRequest, params) -> None:
    flags = 0
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        if key == "sequence_id":
            if kind == "int64_param":
                request.correlation_id = p.int64_param & _U64
            elif kind == "string_param":
                request.correlation_id = p.string_param
            else:
                raise invalid_arg("invalid value type for 'sequence_id' parameter, expected int64_param or string_param.")
        elif key in ("sequence_start", "sequence_end"):
            if kind != "bool_param":
                raise invalid_arg(f"invalid value type for '{key}' parameter, expected bool_param.")
            if p.bool_param:
                flags |= FLAG_SEQUENCE_START if key == "sequence_start" else FLAG_SEQUENCE_END
        elif key == "priority":
            request.priority = _priority(p, kind)
        elif key == "timeout":
            if kind != "int64_param":
                raise invalid_arg("invalid value type for 'timeout' parameter, expected int64_param.")
            request.timeout_us = p.int64_param
        elif key.startswith("triton_"):
            if key != EMPTY_FINAL_RESPONSE:
                raise invalid_arg(_RESERVED)
            if kind != "bool_param":
                raise invalid_arg(f"invalid value type for '{key}' parameter, expected bool_param.")
            request.empty_final = p.bool_param
        elif kind in ("int64_param", "bool_param", "string_param", "double_param"):
            request.parameters[key] = getattr(p, kind)
        else:
            raise invalid_arg(f"invalid value type for '{key}' parameter, expected int64_param, bool_param, "
                              "or string_param.")
    request.flags = flags


def _priority(p, kind: str | None) -> int:
    if kind == "int64_param":
        if p.int64_param < 0:
            raise invalid_arg("invalid value for 'priority', expected value >= 0.")
        return p.int64_param
    if kind == "uint64_param":
        return p.uint64_param
    raise invalid_arg("invalid value type for 'priority' parameter, expected int64_param or uint64_param.")


def _shm_ref(tensor) -> ShmRef | None:
    """Triton's ParseSharedMemoryParams: the region a tensor names, or None."""
    params, name = tensor.parameters, tensor.name
    region = None
    if "shared_memory_region" in params:
        p = params["shared_memory_region"]
        if p.WhichOneof("parameter_choice") != "string_param":
            raise invalid_arg(f"invalid value type for 'shared_memory_region' parameter for tensor '{name}', "
                              "expected string_param.")
        region = p.string_param
    offset = _shm_int(params, "shared_memory_offset", name, region)
    size = _shm_int(params, "shared_memory_byte_size", name, region)
    if region is None:
        return None
    if size is None:
        raise invalid_arg(f"'shared_memory_byte_size' must be specified along with 'shared_memory_region' "
                          f"parameter for tensor '{name}'")
    return ShmRef(region, size, offset or 0)


def _shm_int(params, key: str, name: str, region: str | None) -> int | None:
    if key not in params:
        return None
    if region is None:
        raise invalid_arg(f"'{key}' can not be specified without 'shared_memory_region' parameter for tensor '{name}'")
    p = params[key]
    if p.WhichOneof("parameter_choice") != "int64_param":
        raise invalid_arg(f"invalid value type for '{key}' parameter for tensor '{name}', expected int64_param.")
    return p.int64_param


# contents field -> (content datatype, numpy dtype of the wire values); int/uint narrow per declared type
_CONTENTS = (
    ("bool_contents", "BOOL", "?"), ("int_contents", "INT32", "<i4"), ("int64_contents", "INT64", "<i8"),
    ("uint_contents", "UINT32", "<u4"), ("uint64_contents", "UINT64", "<u8"),
    ("fp32_contents", "FP32", "<f4"), ("fp64_contents", "FP64", "<f8"), ("bytes_contents", "BYTES", None),
)
_NARROW = {("int_contents", "INT8"): "<i1", ("int_contents", "INT16"): "<i2",
           ("uint_contents", "UINT8"): "<u1", ("uint_contents", "UINT16"): "<u2"}
_KNOWN = frozenset(("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                    "FP16", "FP32", "FP64", "BF16", "BYTES"))


def _typed_raw(item, model_name: str) -> bytes:
    """Typed `contents` -> little-endian bytes (BYTES: length-prefixed), checked as Triton does."""
    contents, name, datatype = item.contents, item.name, item.datatype
    raw = b""
    for field, content_type, dtype in _CONTENTS:
        values = getattr(contents, field)
        if not len(values):
            continue
        narrow = _NARROW.get((field, datatype))
        if narrow is not None:
            content_type = datatype
        if raw:
            raise invalid_arg(f"unexpected explicit tensor data for input tensor '{name}' for model "
                              f"'{model_name}', binary data was already supplied.")
        if content_type != datatype:
            declared = datatype if datatype in _KNOWN else "<invalid>"
            raise invalid_arg(f"unexpected explicit tensor data for input tensor '{name}' for model "
                              f"'{model_name}' of type '{content_type}', expected datatype '{declared}'")
        if dtype is None:
            raw = b"".join([_LEN.pack(len(b)) + b for b in values])
        else:
            array = np.array(values[:], dtype=dtype)
            raw = (array.astype(narrow) if narrow else array).tobytes()
    return raw


def _decode_outputs(items) -> dict[str, RequestedOutput]:
    outputs: dict[str, RequestedOutput] = {}
    for item in items:
        name = item.name
        if not len(item.parameters):
            outputs[name] = RequestedOutput(name, True)
            continue
        shm = _shm_ref(item)
        classes = _classification(item.parameters)
        if shm is not None and classes:
            raise invalid_arg("output can't set both 'shared_memory_region' and 'classification'")
        outputs[name] = RequestedOutput(name, True, classes, shm)
    return outputs


def _classification(params) -> int:
    if "classification" not in params:
        return 0
    p = params["classification"]
    if p.WhichOneof("parameter_choice") != "int64_param":
        raise invalid_arg("invalid value type for 'classification' parameter, expected int64_param")
    if p.int64_param <= 0:
        raise invalid_arg("invalid value for 'classification' parameter, expected >= 0")
    return p.int64_param


# -- wire writing (infer responses) ----------------------------------------------------------
_SMALL = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    n = int(n) & _U64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(tag: bytes, text: str) -> bytes:
    """A proto3 string field; empty strings are not written."""
    if not text:
        return b""
    data = text.encode("utf-8", "surrogateescape")
    return tag + _varint(len(data)) + data


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


_OUTPUT_ENTRIES: dict[tuple, bytes] = {}


def _output_entry(name: str, datatype: str, shape) -> bytes:
    """`outputs` entry (InferOutputTensor{name, datatype, packed shape}) of a ModelInferResponse."""
    key = (name, datatype, *shape)
    entry = _OUTPUT_ENTRIES.get(key)
    if entry is None:
        entry = _string(b"\x0a", name) + _string(b"\x12", datatype)
        if len(shape):
            packed = b"".join([_varint(d) for d in shape])
            entry += b"\x1a" + _varint(len(packed)) + packed
        entry = b"\x2a" + _varint(len(entry)) + entry
        if len(_OUTPUT_ENTRIES) >= 4096:
            _OUTPUT_ENTRIES.clear()
        _OUTPUT_ENTRIES[key] = entry
    return entry


_MODEL_HEADS: dict[tuple[str, str], bytes] = {}


def _model_head(model_name: str, model_version: str) -> bytes:
    head = _MODEL_HEADS.get((model_name, model_version))
    if head is None:
        head = _string(b"\x0a", model_name) + _string(b"\x12", model_version)
        if len(_MODEL_HEADS) >= 4096:
            _MODEL_HEADS.clear()
        _MODEL_HEADS[(model_name, model_version)] = head
    return head


def _parameter_entry(key: str, value) -> bytes:
    """A `parameters` map entry (InferParameter value); field 4 of ModelInferResponse."""
    kind = type(value)
    if kind is bool:
        v = b"\x08\x01" if value else b"\x08\x00"
    elif kind is int:
        v = b"\x10" + _varint(value)
    elif kind is str:
        v = _delimited(b"\x1a", value.encode("utf-8", "surrogateescape"))
    elif kind is float:
        v = b"\x21" + struct.pack("<d", value)
    else:
        raise TritonError(ErrorCode.UNSUPPORTED,
                          "Response parameter of type 'TRITONSERVER_PARAMETER_BYTES' is not currently supported")
    entry = _delimited(b"\x0a", key.encode("utf-8", "surrogateescape")) + _delimited(b"\x12", v)
    return _delimited(b"\x22", entry)


_FINAL = _parameter_entry("triton_final_response", True)
_NOT_FINAL = _parameter_entry("triton_final_response", False)


def _response_parts(response: InferenceResponse, request: InferenceRequest, labels, max_batch_size: int,
                    final: bool | None) -> tuple[list, int]:
    """The ModelInferResponse as a list of buffers (tensor bytes not copied) and its byte size."""
    parts = [_model_head(response.model_name, response.model_version)]
    if request.id:
        parts.append(_string(b"\x1a", request.id))
    if response.parameters:
        parts += [_parameter_entry(k, v) for k, v in response.parameters.items()]
    if final is not None:
        parts.append(_FINAL if final else _NOT_FINAL)
    requested = request.outputs
    raws: list = []
    size = 0  # of the tensor bytes in `raws`; every other part is a bytes object
    for tensor in response.outputs:
        wanted = None
        if requested is not None:
            wanted = requested.get(tensor.name)
            if wanted is None:
                continue
            if wanted.classification:
                label_list = labels.get(tensor.name) if labels else None
                tensor = classify(tensor, wanted.classification, label_list, max_batch_size > 0)
        parts.append(_output_entry(tensor.name, tensor.datatype, tensor.shape))
        if wanted is not None and wanted.shm is not None:
            raws.append(b"\x32\x00")  # the bytes are in the region already
            continue
        raw = tensor.as_bytes()
        nbytes = raw.nbytes if type(raw) is memoryview else len(raw)
        prefix = b"\x32" + _varint(nbytes)
        raws.append(prefix)
        size += len(prefix)
        if nbytes:
            raws.append(raw)
            size += nbytes
    for p in parts:
        size += len(p)
    parts += raws
    if size > MAX_MESSAGE_SIZE:
        raise invalid_arg(f"Response has byte size {size} which exceeds gRPC's byte size limit {MAX_MESSAGE_SIZE}.")
    return parts, size


def encode_infer_response(response: InferenceResponse, request: InferenceRequest,
                          labels: dict[str, list[str]] | None = None, max_batch_size: int = 0) -> bytes:
    """The serialized ModelInferResponse: every output in `raw_output_contents` (BYTES
    length-prefixed, classification results as BYTES, shm outputs with an empty entry)."""
    parts, _ = _response_parts(response, request, labels, max_batch_size, None)
    return b"".join(parts)


def encode_stream_response(response: InferenceResponse, request: InferenceRequest,
                           labels: dict[str, list[str]] | None = None, max_batch_size: int = 0,
                           final: bool = True) -> bytes:
    """ModelStreamInferResponse{infer_response} with `triton_final_response` set, as Triton streams."""
    parts, size = _response_parts(response, request, labels, max_batch_size, final)
    parts.insert(0, b"\x12" + _varint(size))
    return b"".join(parts)


def encode_stream_error(message: str, request_id: str = "", model_name: str = "",
                        model_version: str | None = None) -> bytes:
    """ModelStreamInferResponse{error_message, infer_response{id}}; an error raised after the
    request started also echoes the model and `triton_final_response` (model_version not None)."""
    inner = _string(b"\x1a", request_id)
    if model_version is not None:
        inner = (_string(b"\x0a", model_name) + _string(b"\x12", model_version) + inner
                 + _FINAL)
    return _string(b"\x0a", message) + _delimited(b"\x12", inner)


def encode_stream_empty_final(request_id: str, model_name: str, model_version: str) -> bytes:
    """The empty final response a decoupled request asked for (triton_enable_empty_final_response)."""
    inner = _string(b"\x0a", model_name) + _string(b"\x12", model_version) + _string(b"\x1a", request_id) + _FINAL
    return _delimited(b"\x12", inner)


# -- other RPC responses ---------------------------------------------------------------------
def server_metadata(name: str, version: str, extensions: Sequence[str]) -> bytes:
    return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions).SerializeToString()


def model_metadata(name: str, versions: Sequence[str], platform: str,
                   inputs: Iterable[tuple[str, str, Sequence[int]]],
                   outputs: Iterable[tuple[str, str, Sequence[int]]]) -> bytes:
    """As the HTTP body: the caller prepends -1 to shapes when max_batch_size > 0."""
    meta = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=name, versions=versions, platform=platform,
        inputs=[meta(name=n, datatype=d, shape=s) for n, d, s in inputs],
        outputs=[meta(name=n, datatype=d, shape=s) for n, d, s in outputs]).SerializeToString()


def model_config(config) -> bytes:
    """ModelConfigResponse{config}: the normalized ModelConfig (same descriptor pool)."""
    response = pb.ModelConfigResponse()
    response.config.CopyFrom(config)
    return response.SerializeToString()


def _duration(target, d: Duration) -> None:
    target.count, target.ns = d.count, d.ns


_STAT_NAMES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
               "cache_hit", "cache_miss")


def model_statistics(entries: Iterable[tuple[str, str, ModelStats]]) -> bytes:
    """The numbers of HTTP's `encode_model_stats`, as a ModelStatisticsResponse."""
    response = pb.ModelStatisticsResponse()
    for name, version, stats in entries:
        entry = response.model_stats.add(name=name, version=version, last_inference=stats.last_inference_ms,
                                         inference_count=stats.inference_count,
                                         execution_count=stats.execution_count)
        for key in _STAT_NAMES:
            _duration(getattr(entry.inference_stats, key), getattr(stats, key))
        for size in sorted(stats.batches):
            b = stats.batches[size]
            batch = entry.batch_stats.add(batch_size=b.batch_size)
            _duration(batch.compute_input, b.compute_input)
            _duration(batch.compute_infer, b.compute_infer)
            _duration(batch.compute_output, b.compute_output)
    return response.SerializeToString()


def repository_index(rows: Iterable[tuple[str, str | None, str | None, str | None]]) -> bytes:
    """Rows are (name, version, state, reason); None is the empty string, as Triton leaves it."""
    return pb.RepositoryIndexResponse(models=[
        pb.RepositoryIndexResponse.ModelIndex(name=n, version=v or "", state=s or "", reason=r or "")
        for n, v, s, r in rows]).SerializeToString()
