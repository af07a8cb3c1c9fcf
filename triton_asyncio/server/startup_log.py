"""Triton's log line format and the startup tables and lines (spec 9.3, 9.4).

Rules: everything under the `triton_asyncio` logger goes through one handler with
`TritonFormatter`: `I1123 14:07:33.123456 <pid> <file>:<line>] "message"` (or ISO8601), the
message JSON-escaped unless TRITON_SERVER_ESCAPE_LOG_MESSAGES=0; tables are logged raw with
`log_table`. Console output goes to stderr, as tritonserver's logger does. Verbose level n maps
to Python level `verbose_level(n)` (level 1 = DEBUG). The enables of --log-info/-warning/-error
and the verbose level can change at run time through `LogControl.update` (/v2/logging).
"""
from __future__ import annotations

import json
import logging
import os
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .options import ServerOptions

ROOT = "triton_asyncio"
ESCAPE_ENV = "TRITON_SERVER_ESCAPE_LOG_MESSAGES"
TABLE_WIDTH = 500  # tritonserver's width when stdout is not a terminal


def verbose_level(n: int) -> int:
    """Python logging level of Triton verbose level n >= 1 (1 -> DEBUG, 2 -> DEBUG - 1, ...)."""
    return max(1, logging.DEBUG + 1 - n)


class TritonFormatter(logging.Formatter):
    def __init__(self, log_format: str = "default", escape: bool | None = None) -> None:
        super().__init__()
        self.log_format = log_format
        self.escape = os.environ.get(ESCAPE_ENV) != "0" if escape is None else escape

    def format(self, record: logging.LogRecord) -> str:
        letter = "E" if record.levelno >= logging.ERROR else "W" if record.levelno >= logging.WARNING else "I"
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        if self.log_format == "ISO8601":
            head = f"{ts:%Y-%m-%dT%H:%M:%SZ} {letter}"
        else:
            head = f"{letter}{ts:%m%d %H:%M:%S}.{ts.microsecond:06d}"
        message = record.getMessage()
        if self.escape and not getattr(record, "triton_raw", False):
            message = json.dumps(message, ensure_ascii=False)
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return f"{head} {record.process or os.getpid()} {record.filename}:{record.lineno}] {message}"


class LogControl(logging.Filter):
    """The live log settings; filters records by the info/warning/error enables."""

    def __init__(self, options: ServerOptions, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.formatter = TritonFormatter(options.log_format)
        self.handler: logging.Handler | None = None
        self.log_file = options.log_file
        self.log_info, self.log_warning, self.log_error = options.log_info, options.log_warning, options.log_error
        self.log_verbose = max(0, options.log_verbose)
        self._install()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return self.log_error
        if record.levelno >= logging.WARNING:
            return self.log_warning
        return self.log_info if record.levelno >= logging.INFO else True

    def settings(self) -> dict[str, Any]:
        """The /v2/logging body."""
        return {"log_file": self.log_file, "log_info": self.log_info, "log_warning": self.log_warning,
                "log_error": self.log_error, "log_verbose_level": self.log_verbose,
                "log_format": self.formatter.log_format}

    def update(self, settings: Mapping[str, Any]) -> None:
        """Apply already-validated /v2/logging settings (keys as in `settings()`)."""
        for key in ("log_info", "log_warning", "log_error"):
            if key in settings:
                setattr(self, key, bool(settings[key]))
        if "log_verbose_level" in settings:
            self.log_verbose = max(0, int(settings["log_verbose_level"]))
        if "log_format" in settings:
            self.formatter.log_format = str(settings["log_format"])
        if settings.get("log_file", self.log_file) != self.log_file:
            self.log_file = str(settings["log_file"])
            self._install()
        self.logger.setLevel(verbose_level(self.log_verbose) if self.log_verbose else logging.INFO)

    def close(self) -> None:
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()
            self.handler = None

    def _install(self) -> None:
        # Open the new destination first, so a bad --log-file leaves the old handler in place.
        handler: logging.Handler = (logging.FileHandler(self.log_file, mode="a", encoding="utf-8")
                                    if self.log_file else logging.StreamHandler(sys.stderr))
        self.close()
        handler.setFormatter(self.formatter)
        handler.addFilter(self)
        self.handler = handler
        self.logger.addHandler(handler)
        self.logger.setLevel(verbose_level(self.log_verbose) if self.log_verbose else logging.INFO)


_control: LogControl | None = None


def configure_logging(options: ServerOptions) -> LogControl:
    """Route the `triton_asyncio` logger per the options. Raises OSError if --log-file can't open."""
    global _control
    logger = logging.getLogger(ROOT)
    if _control is not None:
        _control.close()
    _control = LogControl(options, logger)
    logger.propagate = False
    return _control


def log_control() -> LogControl | None:
    return _control


def log_table(table: str, logger: logging.Logger | None = None) -> None:
    """Log a rendered table as tritonserver does: unescaped, starting on the next line."""
    (logger or logging.getLogger(ROOT)).info("\n%s\n", table, extra={"triton_raw": True}, stacklevel=2)


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _fair_shares(lens: list[int], width: int) -> list[int]:
    """Column widths: equal shares, surplus of narrow columns handed to wider ones (float32)."""
    n = len(lens)
    shares = [_f32((width - 3 * n - 1) // n)] * n
    order = sorted(range(n), key=lambda i: lens[i])
    for pos, i in enumerate(order):
        if lens[i] < shares[i]:
            excess = _f32(shares[i] - lens[i])
            shares[i] = _f32(shares[i] - excess)
            if pos == n - 1:
                break
            per_column = _f32(excess / (n - pos - 1))
            for j in order[pos + 1:]:
                shares[j] = _f32(shares[j] + per_column)
    return [int(s) for s in shares]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]], width: int = TABLE_WIDTH) -> str:
    """tritonserver's ASCII table: `+---+` borders, one space padding, long cells wrap."""
    rows = [list(map(str, r)) for r in rows]
    lens = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    shares = _fair_shares(lens, width)
    divider = "+" + "".join("-" * (s + 2) + "+" for s in shares)

    def lines(row: Sequence[str]) -> list[str]:
        count = max(-(-len(cell) // share) for cell, share in zip(row, shares, strict=True))
        return ["|" + "".join(f" {cell[j * s:(j + 1) * s]:<{s}} |" for cell, s in zip(row, shares, strict=True))
                for j in range(count)] or [""]

    out = [divider, *lines(headers), divider]
    for row in rows:
        out += lines(row)
    return "\n".join([*out, divider])


def model_table(rows: Iterable[tuple[str, str, str]]) -> str:
    return render_table(("Model", "Version", "Status"), rows)


def options_table(rows: Iterable[tuple[str, str]]) -> str:
    return render_table(("Option", "Value"), rows)


def backend_table(rows: Iterable[tuple[str, str, str]]) -> str:
    return render_table(("Backend", "Path", "Config"), rows)


def repoagent_table(rows: Iterable[tuple[str, str]]) -> str:
    return render_table(("Repository Agent", "Path"), rows)


def server_option_rows(options: ServerOptions, server_version: str,
                       extensions: Iterable[str]) -> list[tuple[str, str]]:
    """The rows of tritonserver's `Option | Value` table, in its order."""
    rows = [("server_id", options.id), ("server_version", server_version),
            ("server_extensions", " ".join(extensions))]
    rows += [(f"model_repository_path[{i}]", p) for i, p in enumerate(options.model_repositories)]
    rows.append(("model_control_mode", f"MODE_{options.model_control_mode.upper()}"))
    rows += [(f"startup_models_{i}", m) for i, m in enumerate(options.load_models)]
    rows += [("strict_model_config", str(int(options.strict_model_config))),
             ("model_config_name", options.model_config_name),
             ("rate_limit", "EXEC_COUNT" if options.rate_limit == "execution_count" else "OFF")]
    resources = sorted(options.rate_limit_resources, key=lambda r: (r[2], r[0]))
    rows += [(f"rate_limit_resource[{i}]", f'{{"name":"{name}", "count":{count} "device":{device}}}')
             for i, (name, count, device) in enumerate(resources)]
    rows.append(("pinned_memory_pool_byte_size", str(options.pinned_memory_pool_byte_size)))
    rows += [(f"cuda_memory_pool_byte_size{{{gpu}}}", str(size)) for gpu, size in options.cuda_memory_pool_byte_size]
    rows += [("min_supported_compute_capability", f"{options.min_supported_compute_capability:.1f}"),
             ("strict_readiness", str(int(options.strict_readiness))),
             ("exit_timeout", str(max(0, options.exit_timeout_secs))),
             ("cache_enabled", str(int(options.cache_enabled)))]
    return rows


def grpc_started(address: str, port: int) -> str:
    return f"Started GRPCInferenceService at {address}:{port}"


def http_started(address: str, port: int) -> str:
    return f"Started HTTPService at {address}:{port}"


def metrics_started(address: str, port: int) -> str:
    return f"Started Metrics Service at {address}:{port}"
