"""The logging extension (`/v2/logging`, gRPC LogSettings): validate an update, apply it live.

Rules: settings arrive as {key: value or None} with Python values (the frontends convert JSON or
the gRPC oneof); None means "no change". Triton's checks, in its order: a `log_file` (any value)
is UNSUPPORTED; the enables must be booleans, the verbose level an unsigned integer, the format
a string and one of "default"/"ISO8601" (else UNAVAILABLE, Triton's own choice of code). Nothing
changes unless every setting is valid. The result is `LogControl.settings()` after the update.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ErrorCode, TritonError, invalid_arg, unavailable
from .startup_log import LogControl, log_control

BOOLS = ("log_info", "log_warning", "log_error")
FORMATS = ("default", "ISO8601")


def current() -> LogControl:
    control = log_control()
    if control is None:
        raise unavailable("the server does not support dynamic logging")
    return control


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The changes to apply, or TritonError with Triton's message."""
    if settings.get("log_file") is not None:
        raise TritonError(ErrorCode.UNSUPPORTED, "log file location can not be updated through network protocol")
    changes: dict[str, Any] = {}
    for key in BOOLS:
        value = settings.get(key)
        if value is not None:
            if not isinstance(value, bool):
                raise invalid_arg(f"expect boolean for '{key}'")
            changes[key] = value
    level = settings.get("log_verbose_level")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < 2**32:
            raise invalid_arg("expect unsigned integer for 'log_verbose_level'")
        changes["log_verbose_level"] = level
    fmt = settings.get("log_format")
    if fmt is not None:
        if not isinstance(fmt, str):
            raise invalid_arg("expect string for 'log_format'")
        if fmt not in FORMATS:
            raise unavailable(f"invalid argument for --log_format, got: {fmt}")
        changes["log_format"] = fmt
    return changes


def update(settings: Mapping[str, Any]) -> dict[str, Any]:
    control = current()
    control.update(validate(settings))
    return control.settings()


def settings() -> dict[str, Any]:
    return current().settings()
