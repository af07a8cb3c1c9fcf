"""What each `tritonserver` flag does to the options being built (the parser's switch).

Rules: `SIMPLE` flags set one `ServerOptions` field from a converted value; `SPECIAL` flags get
a handler. Handlers only record; cross-flag rules run after parsing in `cli_args`. Collapse
rules: repositories and startup models are sets (sorted); --cuda-memory-pool-byte-size and
--cuda-virtual-address-size keep the last value per GPU; --model-load-gpu-limit the first.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from .cli_values import (
    GRPC_RESTRICTED_PREFIX,
    OptionError,
    parse_bool,
    parse_float,
    parse_generic,
    parse_int,
    parse_int_bool,
    parse_metrics_config,
    parse_named_setting,
    parse_pair,
    parse_rate_limit_resource,
    parse_restricted,
    parse_trace_level,
    parse_trace_mode,
    parse_uint64,
)
from .options import ServerOptions, Setting


def warn(message: str) -> None:
    print(message, file=sys.stderr)


class Builder:
    """Mutable state of one parse: field values plus what later checks need to know."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {f.name: f.default for f in fields(ServerOptions)}
        del self.values["metrics_address"]  # absent = follow --http-address
        self.repos: set[str] = set()
        self.models: set[str] = set()
        self.lists: dict[str, list[Any]] = {
            k: [] for k in ("backend_config", "host_policies", "metrics_config", "rate_limit_resources")}
        self.maps: dict[str, dict[Any, Any]] = {
            k: {} for k in ("http_restricted_apis", "grpc_restricted_protocols", "cuda_memory_pool_byte_size",
                            "cuda_virtual_address_size", "model_load_gpu_limit")}
        self.disable_auto_complete = False
        self.strict_present = False
        self.cache_size: str | None = None
        self.cache_config: list[Setting] = []
        self.trace_present: set[str] = set()
        self.trace_levels: set[str] = set()
        self.trace_off = False
        self.trace_config: list[Setting] = []

    def finish(self) -> None:
        v = self.values
        v["model_repositories"], v["load_models"] = tuple(sorted(self.repos)), tuple(sorted(self.models))
        v["trace_config"] = tuple(self.trace_config)
        for key, items in self.lists.items():
            v[key] = tuple(items)
        for key in ("http_restricted_apis", "grpc_restricted_protocols"):
            v[key] = tuple((cat, k, val) for cat, (k, val) in self.maps[key].items())
        for key in ("cuda_memory_pool_byte_size", "cuda_virtual_address_size", "model_load_gpu_limit"):
            v[key] = tuple(sorted(self.maps[key].items()))


def _choice(flag: str, field: str, allowed: tuple[str, ...], *, fold: bool = True,
            message: str = "") -> Callable[[Builder, str], None]:
    def handle(b: Builder, arg: str) -> None:
        value = arg.lower() if fold else arg
        if value not in allowed:
            raise OptionError(message or f"invalid argument for --{flag}")
        b.values[field] = value
    return handle


def _positive(field: str, message: str, bits: int = 32) -> Callable[[Builder, str], None]:
    def handle(b: Builder, arg: str) -> None:
        value = parse_int(arg, bits)
        if value <= 0:
            raise OptionError(message)
        b.values[field] = value
    return handle


def _append(key: str, parse: Callable[[str], Any]) -> Callable[[Builder, str], None]:
    return lambda b, arg: b.lists[key].append(parse(arg))


def _per_gpu(key: str, second: Callable[[str], Any], keep_first: bool = False) -> Callable[[Builder, str], None]:
    def handle(b: Builder, arg: str) -> None:
        gpu, value = parse_pair(arg, ":", parse_int, second)
        if not (keep_first and gpu in b.maps[key]):
            b.maps[key][gpu] = value
    return handle


def _restricted(flag: str, kind: str, prefix: str, key: str) -> Callable[[Builder, str], None]:
    return lambda b, arg: parse_restricted(arg, flag, kind, prefix, b.maps[key])


def _model_config_name(b: Builder, arg: str) -> None:
    if not arg:
        raise OptionError("Error: empty argument for --model-config-name")
    b.values["model_config_name"] = arg


def _strict_model_config(b: Builder, arg: str) -> None:
    warn("Warning: '--strict-model-config' has been deprecated! Please use "
         "'--disable-auto-complete-config' instead.")
    b.strict_present = True
    b.values["strict_model_config"] = parse_bool(arg)


def _ssl_mutual(b: Builder, arg: str) -> None:
    b.values["grpc_use_ssl_mutual"] = parse_bool(arg)
    b.values["grpc_use_ssl"] = True


def _grpc_infer_threads(b: Builder, arg: str) -> None:
    value = parse_int(arg)
    if not 2 <= value <= 128:
        raise OptionError("invalid argument for --grpc_infer_thread_count. Must be in the range 2 to 128.")
    b.values["grpc_infer_thread_count"] = value


def _response_cache_byte_size(b: Builder, arg: str) -> None:
    b.cache_size = str(parse_int(arg, 64))
    warn("Warning: '--response-cache-byte-size' has been deprecated! This will default to the 'local' "
         "cache implementation with the provided byte size for its config. Please use '--cache-config' "
         "instead. The equivalent --cache-config CLI args would be: "
         f"'--cache-config=local,size={b.cache_size}'")


def _cache_config(b: Builder, arg: str) -> None:
    b.cache_config.append(parse_named_setting(arg, "cache-config", "cache", "cache name", name_required=True))


def _trace_config(b: Builder, arg: str) -> None:
    mode, setting, value = parse_named_setting(arg, "trace-config", "trace mode", "trace mode",
                                               name_required=False)
    b.trace_config.append((parse_trace_mode(mode) if mode else "", setting, value))


def _deprecated_trace(flag: str, hint: str) -> Callable[[Builder, str], None]:
    def handle(b: Builder, arg: str) -> None:
        warn(f"Warning: '--{flag}' has been deprecated and will be removed in future releases. "
             f"Please use '--trace-config {hint} instead.")
        b.trace_present.add(flag)
        if flag == "trace-level":
            level = parse_trace_level(arg)
            b.trace_off |= level == "OFF"
            b.trace_levels.update(() if level == "OFF" else (level,))
        elif flag == "trace-file":
            b.values["trace_file"] = arg
        else:
            b.values[flag.replace("-", "_")] = parse_int(arg)
    return handle


def _field(name: str) -> str:
    return name.replace("-", "_")


_SIMPLE_BY_TYPE: dict[Callable[[str], Any], tuple[str, ...]] = {
    str: ("id", "log-file", "http-address", "http-header-forward-pattern", "grpc-address",
          "grpc-header-forward-pattern", "grpc-server-cert", "grpc-server-key", "grpc-root-cert",
          "vertex-ai-default-model", "metrics-address", "backend-directory", "repoagent-directory",
          "cache-directory"),
    parse_bool: ("allow-client-shm", "log-info", "log-warning", "log-error", "exit-on-error",
                 "strict-readiness", "model-namespacing", "enable-peer-access", "allow-http", "reuse-http-port",
                 "allow-grpc", "reuse-grpc-port", "grpc-use-ssl", "grpc-keepalive-permit-without-calls",
                 "allow-sagemaker", "allow-vertex-ai", "allow-metrics", "allow-gpu-metrics",
                 "allow-cpu-metrics"),
    parse_int: ("exit-timeout-secs", "exit-grace-secs", "repository-poll-secs", "model-load-thread-count",
                "model-load-retry-count", "http-port", "http-thread-count", "grpc-port",
                "grpc-infer-allocation-pool-size", "grpc-http2-max-pings-without-data",
                "grpc-http2-max-ping-strikes", "sagemaker-port", "sagemaker-thread-count", "vertex-ai-port",
                "vertex-ai-thread-count", "metrics-port", "metrics-interval-ms", "buffer-manager-thread-count"),
}
SIMPLE: dict[str, tuple[str, Callable[[str], Any]]] = {
    name: (_field(name), convert) for convert, names in _SIMPLE_BY_TYPE.items() for name in names
} | {
    "log-verbose": ("log_verbose", parse_int_bool),
    "pinned-memory-pool-byte-size": ("pinned_memory_pool_byte_size", lambda a: parse_int(a, 64)),
    "min-supported-compute-capability": ("min_supported_compute_capability", parse_float),
    "grpc-keepalive-time": ("grpc_keepalive_time_ms", parse_int),
    "grpc-keepalive-timeout": ("grpc_keepalive_timeout_ms", parse_int),
    "grpc-http2-min-recv-ping-interval-without-data": (
        "grpc_http2_min_recv_ping_interval_without_data_ms", parse_int),
    "grpc-max-connection-age": ("grpc_max_connection_age_ms", parse_int),
    "grpc-max-connection-age-grace": ("grpc_max_connection_age_grace_ms", parse_int),
    "sagemaker-safe-port-range": ("sagemaker_safe_port_range", lambda a: parse_pair(a, "-")),
}

SPECIAL: dict[str, Callable[[Builder, str], None]] = {
    "model-store": lambda b, arg: b.repos.add(arg),
    "model-repository": lambda b, arg: b.repos.add(arg),
    "load-model": lambda b, arg: b.models.add(arg),
    "disable-auto-complete-config": lambda b, arg: setattr(b, "disable_auto_complete", True),
    "strict-model-config": _strict_model_config,
    "model-config-name": _model_config_name,
    "log-format": _choice("log-format", "log_format", ("default", "ISO8601"), fold=False),
    "model-control-mode": _choice("model-control-mode", "model_control_mode", ("none", "poll", "explicit")),
    "rate-limit": _choice("rate-limit", "rate_limit", ("execution_count", "off")),
    "grpc-infer-response-compression-level": _choice(
        "grpc-infer-response-compression-level", "grpc_infer_response_compression_level",
        ("none", "low", "medium", "high"), message="invalid argument for --grpc_infer_response_compression_level"),
    "grpc-infer-thread-count": _grpc_infer_threads,
    "grpc-max-response-pool-size": _positive(
        "grpc_max_response_pool_size", "Error: --grpc-max-response-pool-size must be greater than 0."),
    "http-max-input-size": _positive(
        "http_max_input_size", "Error: --http-max-input-size must be greater than 0.", bits=64),
    "grpc-use-ssl-mutual": _ssl_mutual,
    "http-restricted-api": _restricted("http-restricted-api", "api", "", "http_restricted_apis"),
    "grpc-restricted-protocol": _restricted(
        "grpc-restricted-protocol", "protocol", GRPC_RESTRICTED_PREFIX, "grpc_restricted_protocols"),
    "metrics-config": _append("metrics_config", parse_metrics_config),
    "rate-limit-resource": _append("rate_limit_resources", parse_rate_limit_resource),
    "backend-config": _append("backend_config", lambda a: parse_named_setting(
        a, "backend-config", "backend", "backend name", name_required=False)),
    "host-policy": _append("host_policies", lambda a: parse_generic(a, ",", "host-policy", "policy name")),
    "cuda-memory-pool-byte-size": _per_gpu("cuda_memory_pool_byte_size", parse_uint64),
    "cuda-virtual-address-size": _per_gpu("cuda_virtual_address_size", parse_uint64),
    "model-load-gpu-limit": _per_gpu("model_load_gpu_limit", parse_float, keep_first=True),
    "response-cache-byte-size": _response_cache_byte_size,
    "cache-config": _cache_config,
    "trace-config": _trace_config,
    "trace-file": _deprecated_trace("trace-file", "triton,file=<filepath>"),
    "trace-level": _deprecated_trace("trace-level", "level=<OFF|TIMESTAMPS|TENSORS>"),
    "trace-rate": _deprecated_trace("trace-rate", "rate=<rate value>"),
    "trace-count": _deprecated_trace("trace-count", "count=<count value>"),
    "trace-log-frequency": _deprecated_trace("trace-log-frequency", "triton,log-frequency=<log frequency value>"),
}
