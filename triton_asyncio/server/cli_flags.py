"""The `tritonserver` flag table (names, groups, argument kinds, help) and the usage text.

Rules: data and rendering only. `cli_args` owns what each flag does. Groups, order, argument
descriptions and the usage layout follow tritonserver's parser; the help sentences are ours.
An empty argument description means the flag takes no value.
"""
from __future__ import annotations

from dataclasses import dataclass

BOOL, INT, STR, FLOAT, NONE = "boolean", "integer", "string", "float", ""
NAME_KV = "<string>,<string>=<string>"
LIST_KV = "<string>:<string>=<string>"


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    arg: str  # argument description shown in the usage text; "" = takes no argument
    help: str

    @property
    def takes_arg(self) -> bool:
        return self.arg != NONE


GROUPS: tuple[tuple[str, tuple[Flag, ...]], ...] = (
    ("", (Flag("help", NONE, "Print usage"),)),
    ("Server", (
        Flag("id", STR, "Identifier for this server, reported as 'name' in server metadata."),
        Flag("exit-timeout-secs", INT, "Seconds to wait at exit for in-flight inferences and open "
             "connections to finish. Exits with an error when the timeout expires. Default is 30."),
        Flag("exit-grace-secs", INT, "Seconds to keep serving after SIGTERM while the ready "
             "endpoints report not ready, so load balancers stop routing first; the exit "
             "timeout starts after it. A second signal ends it early. Default is 0."),
        Flag("allow-client-shm", BOOL, "Allow clients to register and unregister system and CUDA "
             "shared memory regions over HTTP and GRPC. Default is false."),
    )),
    ("Logging", (
        Flag("log-verbose", INT, "Verbose logging level. Zero (0) disables verbose logging, values "
             ">= 1 enable it. Also accepts true (1) and false (0)."),
        Flag("log-info", BOOL, "Enable or disable info-level logging."),
        Flag("log-warning", BOOL, "Enable or disable warning-level logging."),
        Flag("log-error", BOOL, "Enable or disable error-level logging."),
        Flag("log-format", STR, "Log line format: \"default\" (LMMDD hh:mm:ss.ssssss) or \"ISO8601\" "
             "(YYYY-MM-DDThh:mm:ssZ L). Default is \"default\"."),
        Flag("log-file", STR, "Append log output to this file instead of the console."),
    )),
    ("Model Repository", (
        Flag("model-store", STR, "Same as --model-repository."),
        Flag("model-repository", STR, "Path of a model repository. Repeat to serve several "
             "repositories; a model name found in more than one repository is unavailable."),
        Flag("exit-on-error", BOOL, "Exit when an error, such as a model failing to load, occurs "
             "during startup. Default is true."),
        Flag("disable-auto-complete-config", NONE, "Do not auto-complete model configurations: "
             "every model needs a complete configuration file."),
        Flag("strict-readiness", BOOL, "If true the ready endpoint reports ready only when the server "
             "is live and every model is available; if false, whenever the server is live."),
        Flag("model-control-mode", STR, "Model management mode: \"none\" (load every model at "
             "startup, no changes later), \"poll\" (follow repository changes, see "
             "--repository-poll-secs) or \"explicit\" (load and unload through the model control "
             "API; --load-model names the startup models). Default is \"none\"."),
        Flag("repository-poll-secs", INT, "Seconds between polls of the model repositories. Only "
             "used with --model-control-mode=poll. Default is 15."),
        Flag("load-model", STR, "Model to load at startup; repeat for several. '*' alone loads every "
             "model. Requires --model-control-mode=explicit."),
        Flag("model-config-name", STR, "Load configs/<name>.pbtxt from each model directory when "
             "present instead of config.pbtxt."),
        Flag("model-load-thread-count", INT, "Number of models loaded in parallel. Default is 4."),
        Flag("model-load-retry-count", INT, "Extra attempts after a failed model load. Default is 0."),
        Flag("model-namespacing", BOOL, "Allow models with the same name in different repositories."),
        Flag("enable-peer-access", BOOL, "Try to enable CUDA peer access between GPUs. Default is "
             "true."),
    )),
    ("HTTP", (
        Flag("allow-http", BOOL, "Listen for HTTP requests. Default is true."),
        Flag("http-address", STR, "Address the HTTP service binds to. Default is 0.0.0.0"),
        Flag("http-port", INT, "Port of the HTTP service. Default is 8000."),
        Flag("reuse-http-port", BOOL, "Let several servers listen on the same HTTP port "
             "(SO_REUSEPORT)."),
        Flag("http-header-forward-pattern", STR, "Regular expression; matching HTTP headers "
             "(case-insensitive) are forwarded as inference request parameters."),
        Flag("http-thread-count", INT, "Number of threads handling HTTP requests. Default is 8."),
        Flag("http-max-input-size", INT, "Largest HTTP request body (JSON part, after "
             "decompression) in bytes. Must be greater than 0. Default is 67108864."),
        Flag("http-restricted-api", LIST_KV, "Restrict HTTP APIs: --http-restricted-api="
             "<apis>:<key>=<value>, where <apis> is a comma-separated list of health, metadata, "
             "inference, shared-memory, model-config, model-repository, statistics, trace, logging "
             "and requests must carry header <key> with <value>."),
    )),
    ("GRPC", (
        Flag("allow-grpc", BOOL, "Listen for GRPC requests. Default is true."),
        Flag("grpc-address", STR, "Address the GRPC service binds to. Default is 0.0.0.0"),
        Flag("grpc-port", INT, "Port of the GRPC service. Default is 8001."),
        Flag("reuse-grpc-port", BOOL, "Let several servers listen on the same GRPC port."),
        Flag("grpc-header-forward-pattern", STR, "Regular expression; matching GRPC metadata keys "
             "are forwarded as inference request parameters."),
        Flag("grpc-infer-thread-count", INT, "Number of GRPC inference handler threads, 2 to 128. "
             "Default is 2."),
        Flag("grpc-infer-allocation-pool-size", INT, "Request/response state objects kept for reuse. "
             "Default is 8."),
        Flag("grpc-max-response-pool-size", INT, "Most response objects queued per stream. Must be "
             "greater than 0."),
        Flag("grpc-use-ssl", BOOL, "Use SSL for GRPC. Default is false."),
        Flag("grpc-use-ssl-mutual", BOOL, "Use mutual SSL authentication for GRPC; implies "
             "--grpc-use-ssl. Default is false."),
        Flag("grpc-server-cert", STR, "PEM file with the server certificate."),
        Flag("grpc-server-key", STR, "PEM file with the server key."),
        Flag("grpc-root-cert", STR, "PEM file with the root certificate."),
        Flag("grpc-infer-response-compression-level", STR, "Compression of inference responses: "
             "none, low, medium or high. Default is none."),
        Flag("grpc-keepalive-time", INT, "Milliseconds between keepalive pings. Default is 7200000."),
        Flag("grpc-keepalive-timeout", INT, "Milliseconds to wait for a keepalive ping "
             "acknowledgement before closing the connection. Default is 20000."),
        Flag("grpc-keepalive-permit-without-calls", BOOL, "Allow keepalive pings when no call is in "
             "flight. Default is false."),
        Flag("grpc-http2-max-pings-without-data", INT, "Pings allowed without data or header frames; "
             "0 means no limit. Default is 2."),
        Flag("grpc-http2-min-recv-ping-interval-without-data", INT, "Shortest interval in "
             "milliseconds between received pings without data before a ping counts as a strike. "
             "Default is 300000."),
        Flag("grpc-http2-max-ping-strikes", INT, "Bad pings tolerated before GOAWAY; 0 means no "
             "limit. Default is 2."),
        Flag("grpc-max-connection-age", INT, "Longest lifetime of a connection in milliseconds. "
             "Default is unlimited."),
        Flag("grpc-max-connection-age-grace", INT, "Grace period in milliseconds after the maximum "
             "connection age. Default is unlimited."),
        Flag("grpc-restricted-protocol", LIST_KV, "Restrict GRPC protocols: "
             "--grpc-restricted-protocol=<protocols>:<key>=<value>, with the categories of "
             "--http-restricted-api."),
    )),
    ("Sagemaker", (
        Flag("allow-sagemaker", BOOL, "Listen for Sagemaker requests. Default is false."),
        Flag("sagemaker-port", INT, "Port of the Sagemaker service. Default is 8080."),
        Flag("sagemaker-safe-port-range", "<integer>-<integer>", "Ports allowed for the other "
             "services."),
        Flag("sagemaker-thread-count", INT, "Threads handling Sagemaker requests. Default is 8."),
    )),
    ("Vertex", (
        Flag("allow-vertex-ai", BOOL, "Listen for Vertex AI requests. Default is false."),
        Flag("vertex-ai-port", INT, "Port of the Vertex AI service. Default is 8080."),
        Flag("vertex-ai-thread-count", INT, "Threads handling Vertex AI requests. Default is 8."),
        Flag("vertex-ai-default-model", STR, "Model used for single-model Vertex AI requests."),
    )),
    ("Metrics", (
        Flag("allow-metrics", BOOL, "Serve Prometheus metrics. Default is true."),
        Flag("allow-gpu-metrics", BOOL, "Serve GPU metrics. Ignored unless --allow-metrics is true."),
        Flag("allow-cpu-metrics", BOOL, "Serve CPU metrics. Ignored unless --allow-metrics is true."),
        Flag("metrics-address", STR, "Address the metrics service binds to. Default is the "
             "--http-address."),
        Flag("metrics-port", INT, "Port of the metrics service. Default is 8002."),
        Flag("metrics-interval-ms", FLOAT, "Milliseconds between metric collections. Default is "
             "2000."),
        Flag("metrics-config", "<string>=<string>", "Metrics setting, --metrics-config="
             "<setting>=<value>. Repeatable."),
    )),
    ("Tracing", (
        Flag("trace-config", NAME_KV, "Trace setting, --trace-config [<mode>,]<setting>=<value> "
             "with <mode> \"triton\" or \"opentelemetry\". Global settings: level, rate, count, "
             "mode."),
    )),
    ("Backend", (
        Flag("backend-directory", STR, "Directory searched for backends. Default is "
             "'/opt/tritonserver/backends'."),
        Flag("backend-config", NAME_KV, "Backend setting, --backend-config=<backend>,<setting>="
             "<value>; without <backend>, a setting for every backend."),
    )),
    ("Repository Agent", (
        Flag("repoagent-directory", STR, "Directory searched for repository agents. Default is "
             "'/opt/tritonserver/repoagents'."),
    )),
    ("Response Cache", (
        Flag("cache-config", NAME_KV, "Cache setting, --cache-config=<cache>,<setting>=<value>, "
             "e.g. local,size=1048576."),
        Flag("cache-directory", STR, "Directory searched for cache implementations. Default is "
             "'/opt/tritonserver/caches'."),
    )),
    ("Rate Limiter", (
        Flag("rate-limit", STR, "Rate limiting mode: \"execution_count\" or \"off\". Default is "
             "\"off\"."),
        Flag("rate-limit-resource", "<string>:<integer>:<integer>", "Resource available to the "
             "rate limiter, --rate-limit-resource=<name>:<count>[:<device>]. Repeatable."),
    )),
    ("Memory/Device Management", (
        Flag("pinned-memory-pool-byte-size", INT, "Bytes of pinned system memory to pool. Default is "
             "268435456."),
        Flag("cuda-memory-pool-byte-size", "<integer>:<integer>", "CUDA memory pool per GPU, "
             "<gpu>:<bytes>. Repeatable, once per GPU. Default is 67108864."),
        Flag("cuda-virtual-address-size", "<integer>:<integer>", "CUDA virtual address size per GPU "
             "for growable implicit state, <gpu>:<bytes>. Default is 1 GiB."),
        Flag("min-supported-compute-capability", FLOAT, "GPUs below this CUDA compute capability are "
             "not used."),
        Flag("buffer-manager-thread-count", INT, "Threads used for tensor copies. Default is 0."),
        Flag("host-policy", NAME_KV, "Host policy setting, --host-policy=<policy>,<setting>=<value>"
             " with settings numa-node and cpu-cores."),
        Flag("model-load-gpu-limit", "<device_id>:<fraction>", "Refuse model loads on a GPU whose "
             "memory use exceeds this fraction."),
    )),
    ("DEPRECATED", (
        Flag("strict-model-config", BOOL, "DEPRECATED: use --disable-auto-complete-config."),
        Flag("response-cache-byte-size", INT, "DEPRECATED: use --cache-config."),
        Flag("trace-file", STR, "DEPRECATED: use --trace-config triton,file=<path>."),
        Flag("trace-level", STR, "DEPRECATED: use --trace-config level=<OFF|TIMESTAMPS|TENSORS>."),
        Flag("trace-rate", INT, "DEPRECATED: use --trace-config rate=<rate>."),
        Flag("trace-count", INT, "DEPRECATED: use --trace-config count=<count>."),
        Flag("trace-log-frequency", INT, "DEPRECATED: use --trace-config triton,log-frequency=<n>."),
    )),
)

FLAGS: dict[str, Flag] = {f.name: f for _, flags in GROUPS for f in flags}


def _wrap(text: str, width: int = 60) -> str:
    """tritonserver's help wrapping: break at the last space before each ~width-char mark."""
    pos = 0
    while pos + width < len(text):
        cut = text.rfind(" ", 0, pos + width + 1)
        if cut == -1:
            break
        text = text[:cut] + "\n\t" + text[cut + 1:]
        pos += width + 9
    return text


def usage() -> str:
    """The grouped option list printed after `Usage: tritonserver [options]`."""
    out: list[str] = []
    for group, flags in GROUPS:
        if group and flags:
            out.append(f"\n{group}:\n")
        for f in flags:
            head = f"  --{f.name} <{f.arg}>" if f.takes_arg else f"  --{f.name}"
            out.append(f"{head}\n\t{_wrap(f.help)}\n")
    return "".join(out)
