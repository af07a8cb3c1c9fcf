"""Value parsers for `tritonserver` flags, with tritonserver's error texts.

Rules: pure functions of one argument string; each failure raises `OptionError(reason)` and the
caller (`cli_args`) adds the `Bad option: "--<flag>".` line. Numbers follow the C++ std::sto*
functions the real parser uses: leading blanks and a sign are accepted, parsing stops at the
first character that does not fit (`--http-port=80x` is 80), no digits at all is an error.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

RESTRICTED_CATEGORIES = (
    "health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
    "statistics", "trace", "logging",
)
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"

_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?)(\d+)")
_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))",
                    re.IGNORECASE)


class OptionError(ValueError):
    """A flag value was rejected; `str()` is tritonserver's reason text."""


def _invalid(arg: str) -> OptionError:
    return OptionError(f"Invalid option value. Got {arg}")


def _out_of_bound(arg: str) -> OptionError:
    return OptionError(f"Provided option value is out of bound. Got {arg}")


def parse_int(arg: str, bits: int = 32) -> int:
    """std::stoi (bits=32) or std::stoll (bits=64)."""
    m = _INT.match(arg)
    if m is None:
        raise _invalid(arg)
    value = int(m.group(1) + m.group(2))
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise _out_of_bound(arg)
    return value


def parse_uint64(arg: str) -> int:
    """std::stoull: a leading '-' negates modulo 2**64, as strtoull does."""
    m = _INT.match(arg)
    if m is None:
        raise _invalid(arg)
    magnitude = int(m.group(2))
    if magnitude >= 1 << 64:
        raise _out_of_bound(arg)
    return (-magnitude) % (1 << 64) if m.group(1) == "-" else magnitude


def parse_float(arg: str) -> float:
    """std::stod."""
    m = _FLOAT.match(arg)
    if m is None:
        raise _invalid(arg)
    value = float(m.group(1))
    if value in (float("inf"), float("-inf")) and "inf" not in m.group(1).lower():
        raise _out_of_bound(arg)
    return value


def parse_bool(arg: str) -> bool:
    low = arg.lower()
    if low in ("true", "on", "1"):
        return True
    if low in ("false", "off", "0"):
        return False
    raise OptionError(f"invalid value for bool option: {arg}")


def parse_int_bool(arg: str) -> int:
    """--log-verbose: true (1), false (0) or an integer level."""
    low = arg.lower()
    if low in ("true", "false"):
        return int(low == "true")
    return parse_int(arg)


def parse_pair(arg: str, delim: str, first: Callable[[str], Any] = parse_int,
               second: Callable[[str], Any] = parse_int) -> tuple[Any, Any]:
    """`<first><delim><second>`, e.g. --cuda-memory-pool-byte-size=0:1024."""
    at = arg.find(delim)
    if at < 0:
        raise OptionError(
            "Cannot parse pair option due to incorrect number of inputs.--<pair option> argument "
            f"requires format <first>{delim}<second>. Found: {arg}")
    return first(arg[:at]), second(arg[at + len(delim):])


def _split_setting(arg: str, at_name: int) -> tuple[str, str] | None:
    eq = arg.find("=", at_name + 1)
    if eq < 0:
        return None
    setting, value = arg[at_name + 1:eq], arg[eq + 1:]
    return (setting, value) if setting and value else None


def parse_generic(arg: str, first: str, option: str, config_name: str) -> tuple[str, str, str]:
    """`<name><first><setting>=<value>` with every part required (--host-policy and others)."""
    at = arg.find(first)
    parts = _split_setting(arg, at) if at >= 0 else None
    if at <= 0 or parts is None:
        raise OptionError(f"--{option} option format is '<{config_name}>{first}<setting>=<value>'. "
                          f"Got {arg}")
    return arg[:at], parts[0], parts[1]


def parse_named_setting(arg: str, option: str, what: str, placeholder: str, *,
                        name_required: bool) -> tuple[str, str, str]:
    """`[<name>,]<setting>=<value>` for --backend-config, --cache-config, --trace-config.

    `what` and `placeholder` are the words in the messages ("backend" / "backend name"); the
    name is "" for a global setting, which only --backend-config and --trace-config allow.
    """
    at = arg.find(",")
    if at == 0 or (at < 0 and name_required):
        tail = "" if name_required else " or <setting>=<value>"
        raise OptionError(f"No {what} specified. --{option} option format is "
                          f"<{placeholder}>,<setting>=<value>{tail}. Got {arg}")
    parts = _split_setting(arg, at)
    if parts is None:
        raise OptionError(f"--{option} option format is '<{placeholder}>,<setting>=<value>'. Got {arg}")
    return (arg[:at] if at > 0 else ""), parts[0], parts[1]


def parse_metrics_config(arg: str) -> tuple[str, str]:
    eq = arg.find("=")
    setting, value = arg[:eq], arg[eq + 1:]
    if eq < 0 or "," in setting or not setting or not value:
        raise OptionError(f"--metrics-config option format is <setting>=<value>. Got {arg}")
    return setting, value


def parse_rate_limit_resource(arg: str) -> tuple[str, int, int]:
    parts = arg.split(":")
    if len(parts) not in (2, 3):
        raise OptionError("--rate-limit-resource option format is '<resource_name>:<count>:<device>' "
                          f"or '<resource_name>:<count>'. Got {arg}")
    device = parse_int(parts[2]) if len(parts) == 3 else -1
    return parts[0], parse_int(parts[1]), device


def parse_restricted(arg: str, option: str, kind: str, prefix: str,
                     taken: dict[str, tuple[str, str]]) -> None:
    """`<categories>:<key>=<value>`; adds each category to `taken` (category -> (key, value))."""
    names, key, value = parse_generic(arg, ":", option, "config name")
    for name in names.split(","):
        if name not in RESTRICTED_CATEGORIES:
            raise OptionError(f"unknown restricted {kind} '{name}' ")
        if name in taken:
            raise OptionError(f"restricted {kind} '{name}' can not be specified in multiple config groups")
        taken[name] = (prefix + key, value)


def parse_trace_level(arg: str) -> str:
    """"OFF", "TIMESTAMPS" or "TENSORS"."""
    low = arg.lower()
    if low in ("false", "off"):
        return "OFF"
    if low in ("true", "on", "min", "max", "timestamps"):
        return "TIMESTAMPS"
    if low == "tensors":
        return "TENSORS"
    raise OptionError(f"invalid value for trace level option: {arg}")


def parse_trace_mode(arg: str) -> str:
    low = arg.lower()
    if low in ("triton", "opentelemetry"):
        return low
    raise OptionError(f"invalid value for trace mode option: {arg}. "
                      "Available options are \"triton\" and \"opentelemetry\"")
