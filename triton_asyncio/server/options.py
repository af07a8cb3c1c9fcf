"""`ServerOptions`: every `tritonserver` flag (spec 9.2), typed, with tritonserver's defaults.

Rules: plain data only. Parsing and its error messages live in `cli_args`; what the server does
with a value lives with the component that uses it. Field names follow the flag names
(`--http-port` -> `http_port`) except where noted. Repeatable key/value flags are tuples of
tuples, in the order given (after the collapse rules `cli_args` documents).
"""
from __future__ import annotations

from dataclasses import dataclass

INT32_MAX = 2147483647

# (name, key, value): --backend-config, --host-policy, --cache-config, --trace-config.
Setting = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    # Server
    id: str = "triton"
    exit_timeout_secs: int = 30
    # Beyond Triton: seconds after SIGTERM to keep serving while reporting not ready (0 = none)
    exit_grace_secs: int = 0

    # Logging (log_verbose: 0 = off, >= 1 = verbose level; log_file "" = console)
    log_verbose: int = 0
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True
    log_format: str = "default"  # "default" | "ISO8601"
    log_file: str = ""

    # Model repository. model_repositories and load_models are sets in tritonserver: duplicates
    # collapse and the order is sorted.
    model_repositories: tuple[str, ...] = ()
    exit_on_error: bool = True
    disable_auto_complete_config: bool = False  # the flag was given
    strict_model_config: bool = False  # effective value: True when auto-complete is disabled
    strict_readiness: bool = True
    model_control_mode: str = "none"  # "none" | "poll" | "explicit"
    repository_poll_secs: int = 15  # forced to 0 by the parser unless mode is "poll"
    load_models: tuple[str, ...] = ()
    model_config_name: str = ""
    model_load_thread_count: int = 4
    model_load_retry_count: int = 0
    model_namespacing: bool = False
    enable_peer_access: bool = True
    allow_client_shm: bool = False

    # HTTP
    allow_http: bool = True
    http_address: str = "0.0.0.0"
    http_port: int = 8000
    reuse_http_port: bool = False
    http_header_forward_pattern: str = ""  # matched case-insensitively
    http_thread_count: int = 8
    http_max_input_size: int = 67108864
    # (api category, header key, expected value), one entry per restricted category
    http_restricted_apis: tuple[Setting, ...] = ()

    # GRPC
    allow_grpc: bool = True
    grpc_address: str = "0.0.0.0"
    grpc_port: int = 8001
    reuse_grpc_port: bool = False
    grpc_header_forward_pattern: str = ""
    grpc_infer_thread_count: int = 2
    grpc_infer_allocation_pool_size: int = 8
    grpc_max_response_pool_size: int = INT32_MAX
    grpc_use_ssl: bool = False  # also set by --grpc-use-ssl-mutual
    grpc_use_ssl_mutual: bool = False
    grpc_server_cert: str = ""
    grpc_server_key: str = ""
    grpc_root_cert: str = ""
    grpc_infer_response_compression_level: str = "none"  # none | low | medium | high
    grpc_keepalive_time_ms: int = 7200000  # --grpc-keepalive-time
    grpc_keepalive_timeout_ms: int = 20000  # --grpc-keepalive-timeout
    grpc_keepalive_permit_without_calls: bool = False
    grpc_http2_max_pings_without_data: int = 2
    grpc_http2_min_recv_ping_interval_without_data_ms: int = 300000
    grpc_http2_max_ping_strikes: int = 2
    grpc_max_connection_age_ms: int | None = None  # --grpc-max-connection-age; None = unlimited
    grpc_max_connection_age_grace_ms: int | None = None
    # (protocol category, header key with the "triton-grpc-protocol-" prefix, expected value)
    grpc_restricted_protocols: tuple[Setting, ...] = ()

    # Sagemaker / Vertex AI front-ends (accepted, not served)
    allow_sagemaker: bool = False
    sagemaker_port: int = 8080
    sagemaker_safe_port_range: tuple[int, int] | None = None
    sagemaker_thread_count: int = 8
    allow_vertex_ai: bool = False
    vertex_ai_port: int = 8080
    vertex_ai_thread_count: int = 8
    vertex_ai_default_model: str = ""

    # Metrics (allow_gpu/cpu_metrics are ANDed with allow_metrics by the parser)
    allow_metrics: bool = True
    allow_gpu_metrics: bool = True
    allow_cpu_metrics: bool = True
    metrics_address: str = "0.0.0.0"  # the parser defaults it to http_address
    metrics_port: int = 8002
    metrics_interval_ms: int = 2000
    metrics_config: tuple[tuple[str, str], ...] = ()  # (setting, value)

    # Tracing, resolved from --trace-config and the deprecated --trace-* flags
    trace_level: tuple[str, ...] = ()  # subset of ("TIMESTAMPS", "TENSORS"); () = OFF
    trace_rate: int = 1000
    trace_count: int = -1
    trace_mode: str = "triton"  # "triton" | "opentelemetry"
    trace_file: str = ""
    trace_log_frequency: int = 0
    trace_config: tuple[Setting, ...] = ()  # raw (mode or "", setting, value) as given

    # Backends, repository agents
    backend_directory: str = "/opt/tritonserver/backends"
    backend_config: tuple[Setting, ...] = ()  # backend "" = global setting for every backend
    repoagent_directory: str = "/opt/tritonserver/repoagents"

    # Response cache (cache_enabled: any cache flag given)
    cache_config: tuple[Setting, ...] = ()
    cache_directory: str = "/opt/tritonserver/caches"
    cache_enabled: bool = False

    # Rate limiter
    rate_limit: str = "off"  # "off" | "execution_count"
    rate_limit_resources: tuple[tuple[str, int, int], ...] = ()  # (name, count, device or -1)

    # Memory / device management
    pinned_memory_pool_byte_size: int = 268435456
    cuda_memory_pool_byte_size: tuple[tuple[int, int], ...] = ()  # (gpu, bytes); default 64 MiB
    cuda_virtual_address_size: tuple[tuple[int, int], ...] = ()  # (gpu, bytes); default 1 GiB
    min_supported_compute_capability: float = 7.5
    buffer_manager_thread_count: int = 0
    host_policies: tuple[Setting, ...] = ()
    model_load_gpu_limit: tuple[tuple[int, float], ...] = ()  # (gpu, fraction)
