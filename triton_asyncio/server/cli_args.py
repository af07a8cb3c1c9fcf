"""`parse_args(argv) -> ServerOptions`: tritonserver's command line, rules of spec 9.1.

Rules: long options only, GNU getopt_long style (`--flag=value` or `--flag value`, unambiguous
prefixes, non-options collected and rejected after the options). Any parse error raises
`UsageError` whose text is what tritonserver writes to stderr: the error, then
`Usage: tritonserver [options]` and the grouped flag list; the caller prints it and exits with
`exit_code`. Deprecation warnings go straight to stderr, as tritonserver does. Post-parse
checks mirror tritonserver's parser, main() (port collisions) and the core's two startup checks
(a repository is required; `--load-model=*` must be alone).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from .cli_flags import FLAGS, Flag, usage
from .cli_handlers import SIMPLE, SPECIAL, Builder, warn
from .cli_values import OptionError, parse_int, parse_trace_level, parse_trace_mode
from .options import ServerOptions

PROG = "tritonserver"
UNSUPPORTED_REPOSITORIES = ("as://",)  # s3:// and gs:// are served (repository/cloud.py)

# Fields this server accepts but does not act on yet; the caller warns when one is not default.
UNIMPLEMENTED = frozenset({
    "model_namespacing", "model_load_retry_count", "model_load_gpu_limit",
    "reuse_http_port", "http_header_forward_pattern",
    "grpc_use_ssl", "grpc_use_ssl_mutual",
    "grpc_http2_max_pings_without_data", "grpc_max_connection_age_ms", "grpc_max_connection_age_grace_ms",
    "allow_sagemaker", "allow_vertex_ai",
    "backend_directory", "backend_config", "repoagent_directory",
    "cache_directory", "rate_limit", "rate_limit_resources",
    "cuda_virtual_address_size",
    "host_policies",
})
_FIELD_FLAG = {field: name for name, (field, _) in SIMPLE.items()} | {
    "model_repositories": "model-repository", "load_models": "load-model",
    "http_restricted_apis": "http-restricted-api", "grpc_restricted_protocols": "grpc-restricted-protocol",
    "rate_limit_resources": "rate-limit-resource", "host_policies": "host-policy",
    "cache_enabled": "cache-config", "trace_level": "trace-config", "trace_mode": "trace-config",
    "trace_file": "trace-config", "trace_log_frequency": "trace-config",
}


class UsageError(Exception):
    """The command line was rejected (or --help): `message` is the full text for stderr."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage_text(error: str = "") -> str:
    head = f"{error}\n" if error else "\n"
    return f"{head}Usage: {PROG} [options]\n{usage()}"


def parse_args(argv: list[str]) -> ServerOptions:
    """argv without the program name -> ServerOptions, or raise UsageError."""
    b = Builder()
    positional: list[str] = []
    for flag, arg in _options(argv, positional):
        try:
            if flag.name == "help":
                raise UsageError(usage_text())
            if flag.name in SIMPLE:
                field, convert = SIMPLE[flag.name]
                b.values[field] = convert(arg)
            else:
                SPECIAL[flag.name](b, arg)
        except OptionError as e:
            raise UsageError(usage_text(f'Bad option: "--{flag.name}".\n{e}')) from None
    if positional:
        raise UsageError(usage_text(f"Unexpected argument: {positional[0]}"))
    try:
        _post_parse(b)
    except OptionError as e:
        raise UsageError(usage_text(str(e))) from None
    _check_ports(b.values)
    _core_checks(b)
    return ServerOptions(**b.values)


def unsupported_flags(options: ServerOptions) -> list[str]:
    """Flag names set to a non-default value that this server accepts but ignores."""
    names = ["model-repository"] if any(p.startswith(UNSUPPORTED_REPOSITORIES) for p in options.model_repositories) else []
    for f in fields(ServerOptions):
        if f.name in UNIMPLEMENTED and getattr(options, f.name) != f.default:
            names.append(_FIELD_FLAG.get(f.name, f.name.replace("_", "-")))
    return list(dict.fromkeys(names))


def _options(argv: list[str], positional: list[str]) -> Iterator[tuple[Flag, str]]:
    """getopt_long over argv: yields (flag, argument); non-options go to `positional`."""
    i = 0
    while i < len(argv):
        text = argv[i]
        i += 1
        if text == "--":
            positional.extend(argv[i:])
            return
        if not text.startswith("-") or text == "-":
            positional.append(text)
            continue
        if not text.startswith("--"):
            raise _getopt_error(f"invalid option -- '{text[1]}'")
        name, eq, value = text[2:].partition("=")
        flag = _match(name, text)
        if not flag.takes_arg:
            if eq:
                raise _getopt_error(f"option '--{flag.name}' doesn't allow an argument")
            yield flag, ""
        elif eq:
            yield flag, value
        elif i < len(argv):
            yield flag, argv[i]
            i += 1
        else:
            raise _getopt_error(f"option '--{flag.name}' requires an argument")


def _match(name: str, text: str) -> Flag:
    if name in FLAGS:
        return FLAGS[name]
    found = [f for n, f in FLAGS.items() if name and n.startswith(name)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise _getopt_error(f"unrecognized option '{text}'")
    choices = " ".join(f"'--{f.name}'" for f in found)
    raise _getopt_error(f"option '{text}' is ambiguous; possibilities: {choices}")


def _getopt_error(message: str) -> UsageError:
    return UsageError(usage_text(f"{PROG}: {message}\n"))


def _post_parse(b: Builder) -> None:
    v = b.values
    if v["model_control_mode"] != "poll":
        v["repository_poll_secs"] = 0
    if b.models and v["model_control_mode"] != "explicit":
        raise OptionError("Error: Use of '--load-model' requires setting '--model-control-mode=explicit' as well.")
    v["allow_gpu_metrics"] = v["allow_gpu_metrics"] and v["allow_metrics"]
    v["allow_cpu_metrics"] = v["allow_cpu_metrics"] and v["allow_metrics"]
    v.setdefault("metrics_address", v["http_address"])
    _post_trace(b)
    if b.disable_auto_complete:
        if b.strict_present and not v["strict_model_config"]:
            warn("Warning: Overriding deprecated '--strict-model-config' from False to True in favor of "
                 "'--disable-auto-complete-config'!")
        v["disable_auto_complete_config"] = v["strict_model_config"] = True
    if b.cache_size is not None and b.cache_config:
        raise OptionError("Error: Incompatible flags --response-cache-byte-size and --cache-config both "
                          "provided. Please provide one or the other.")
    cache = b.cache_config or ([("local", "size", b.cache_size)] if b.cache_size is not None else [])
    v["cache_config"], v["cache_enabled"] = tuple(cache), bool(cache)
    b.finish()


def _post_trace(b: Builder) -> None:
    v, explicit_off = b.values, b.trace_off
    for mode, setting, value in b.trace_config:
        where = f"{mode}," if mode else ""
        try:
            if not mode:
                explicit_off |= _global_trace_setting(b, setting, value)
            elif mode == "triton" and setting == "file":
                _override_warning(b.trace_present, "trace-file", "file")
                v["trace_file"] = value
            elif mode == "triton" and setting == "log-frequency":
                _override_warning(b.trace_present, "trace-log-frequency", "file", "trace-file")
                v["trace_log_frequency"] = parse_int(value)
        except OptionError as e:
            raise OptionError(f'Bad option: "--trace-config {where}{setting}".\n{e}') from None
    if v["trace_mode"] == "opentelemetry":
        for flag in ("trace-file", "trace-log-frequency"):
            if flag in b.trace_present:
                warn(f"Warning: '--{flag}' is deprecated and will be ignored with opentelemetry tracing mode.")
    v["trace_level"] = () if explicit_off else tuple(sorted(b.trace_levels, reverse=True))


def _global_trace_setting(b: Builder, setting: str, value: str) -> bool:
    v = b.values
    if setting == "mode":
        v["trace_mode"] = parse_trace_mode(value)
    elif setting in ("rate", "count"):
        _override_warning(b.trace_present, f"trace-{setting}", "rate value" if setting == "rate" else "count")
        v[f"trace_{setting}"] = parse_int(value)
    elif setting == "level":
        _override_warning(b.trace_present, "trace-level", "level")
        level = parse_trace_level(value)
        if level == "OFF":
            return True
        b.trace_levels.add(level)
    return False


def _override_warning(present: set[str], flag: str, what: str, shown: str = "") -> None:
    if flag in present:
        warn(f"Warning: Overriding deprecated '--{shown or flag}' in favor of provided {what} in --trace-config!")


def _check_ports(v: dict[str, Any]) -> None:
    """main()'s CheckPortCollision. Port 0 (let the OS pick) never collides here."""
    services = [(label, address, port, safe) for label, allow, address, port, safe in (
        ("HTTP", v["allow_http"], v["http_address"], v["http_port"], None),
        ("GRPC", v["allow_grpc"], v["grpc_address"], v["grpc_port"], None),
        ("metrics", v["allow_metrics"], v["metrics_address"], v["metrics_port"], None),
        ("SageMaker", v["allow_sagemaker"], "0.0.0.0", v["sagemaker_port"], v["sagemaker_safe_port_range"]),
        ("Vertex AI", v["allow_vertex_ai"], "0.0.0.0", v["vertex_ai_port"], None),
    ) if allow]
    for i, (label, address, port, safe) in enumerate(services):
        for j, (other, other_address, other_port, _) in enumerate(services):
            if j == i or (safe is None and j < i) or address != other_address:
                continue
            if safe is not None and not safe[0] <= other_port <= safe[1]:
                raise UsageError(usage_text(f"The server cannot listen to {other} requests at port "
                                            f"{other_port}, allowed port range is [{safe[0]}, {safe[1]}]"))
            if port and port == other_port:
                raise UsageError(usage_text(f"The server cannot listen to {label} requests and {other} "
                                            f"requests at the same address and port {address}:{port}"))


def _core_checks(b: Builder) -> None:
    """Checks the core makes when the server is created (no usage text, exit 1)."""
    if not b.values["model_repositories"]:
        raise UsageError("error: creating server: Invalid argument - --model-repository must be specified")
    if "*" in b.values["load_models"] and len(b.values["load_models"]) > 1:
        raise UsageError("error: creating server: Invalid argument - Wildcard model name '*' must be the "
                         "ONLY startup model if specified at all.")

