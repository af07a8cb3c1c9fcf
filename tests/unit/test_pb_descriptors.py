"""Our generated pb modules against tritonclient's: every message, field, enum and rpc must match.

Rules: compare flattened descriptor facts (not serialized bytes), so a failure names the one field
that differs. tritonclient ships no health_pb2; health.proto is checked against Triton's original.
"""
from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from triton_asyncio.pb import POOL, grpc_service_pb2, health_pb2, model_config_pb2

tc_service = pytest.importorskip("tritonclient.grpc.service_pb2")
tc_model_config = pytest.importorskip("tritonclient.grpc.model_config_pb2")

FDP = descriptor_pb2.FieldDescriptorProto


def _file_proto(module) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)


def _enum_facts(prefix: str, enum: descriptor_pb2.EnumDescriptorProto, out: dict) -> None:
    out[f"enum {prefix}"] = tuple((v.name, v.number) for v in enum.value)


def _field_fact(msg: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto) -> tuple:
    oneof = msg.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
    return (field.number, FDP.Type.Name(field.type), FDP.Label.Name(field.label), field.type_name,
            oneof, field.proto3_optional, field.options.SerializeToString())


def _message_facts(prefix: str, msg: descriptor_pb2.DescriptorProto, out: dict) -> None:
    out[f"message {prefix}"] = (tuple(f.name for f in msg.field), tuple(o.name for o in msg.oneof_decl),
                                msg.options.map_entry)
    for field in msg.field:
        out[f"field {prefix}.{field.name}"] = _field_fact(msg, field)
    for enum in msg.enum_type:
        _enum_facts(f"{prefix}.{enum.name}", enum, out)
    for nested in msg.nested_type:
        _message_facts(f"{prefix}.{nested.name}", nested, out)


def _facts(module) -> dict:
    fd = _file_proto(module)
    out: dict = {"file": (fd.name, fd.package, fd.syntax, tuple(fd.dependency))}
    for enum in fd.enum_type:
        _enum_facts(f"{fd.package}.{enum.name}", enum, out)
    for msg in fd.message_type:
        _message_facts(f"{fd.package}.{msg.name}", msg, out)
    for svc in fd.service:
        out[f"service {svc.name}"] = tuple(m.name for m in svc.method)
        for m in svc.method:
            out[f"rpc {svc.name}.{m.name}"] = (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
    return out


def _diff(ours: dict, theirs: dict) -> list[str]:
    keys = sorted(set(ours) | set(theirs))
    return [f"{k}: ours={ours.get(k)!r} tritonclient={theirs.get(k)!r}" for k in keys if ours.get(k) != theirs.get(k)]


@pytest.mark.parametrize(("ours", "theirs"), [(model_config_pb2, tc_model_config), (grpc_service_pb2, tc_service)],
                         ids=["model_config", "grpc_service"])
def test_descriptor_matches_tritonclient(ours, theirs) -> None:
    facts = _facts(ours)
    assert len(facts) > 50
    assert _diff(facts, _facts(theirs)) == []


def test_service_methods_and_streaming() -> None:
    svc = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    stream = svc.methods_by_name["ModelStreamInfer"]
    assert (stream.client_streaming, stream.server_streaming) == (True, True)
    assert stream.output_type.full_name == "inference.ModelStreamInferResponse"
    assert all(not m.client_streaming and not m.server_streaming for m in svc.methods if m.name != "ModelStreamInfer")


def test_health_matches_triton() -> None:
    facts = _facts(health_pb2)
    assert facts["file"] == ("health.proto", "grpc.health.v1", "proto3", ())
    assert facts["message grpc.health.v1.HealthCheckRequest"] == (("service",), (), False)
    assert facts["field grpc.health.v1.HealthCheckResponse.status"][:4] == (
        1, "TYPE_ENUM", "LABEL_OPTIONAL", ".grpc.health.v1.HealthCheckResponse.ServingStatus")
    assert facts["enum grpc.health.v1.HealthCheckResponse.ServingStatus"] == (
        ("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2), ("SERVICE_UNKNOWN", 3))
    req, resp = ".grpc.health.v1.HealthCheckRequest", ".grpc.health.v1.HealthCheckResponse"
    assert facts["rpc Health.Check"] == (req, resp, False, False)
    assert facts["rpc Health.Watch"] == (req, resp, False, True)


def test_private_pool_coexists_with_tritonclient() -> None:
    assert model_config_pb2.ModelConfig is not tc_model_config.ModelConfig
    assert model_config_pb2.DESCRIPTOR.pool is POOL
    assert grpc_service_pb2.DESCRIPTOR.pool is POOL
    config = model_config_pb2.ModelConfig(name="m", max_batch_size=8)
    config.input.add(name="IN", data_type=model_config_pb2.TYPE_INT32, dims=[16])
    theirs = tc_model_config.ModelConfig.FromString(config.SerializeToString())
    assert theirs.input[0].dims == [16] and theirs.max_batch_size == 8
