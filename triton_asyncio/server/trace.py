"""The trace extension: global and per-model trace settings, sampling, and Triton's trace file.

Rules: settings are Triton's (§1.16): trace_level (OFF | TIMESTAMPS and/or TENSORS), trace_rate
(trace one request in every `rate`), trace_count (traces left; -1 = unlimited), log_frequency
(0 = write every trace at exit; N = write a file `<trace_file>.<k>` every N traces), trace_file
and trace_mode (start-up only). A model's settings are the global ones with its overrides on
top; a model with overrides samples and counts on its own, the others share the global state.
`active` is False while no setting traces anything: the data plane's one check per request.

A sampled request gets a class with the same layout whose `set_state` stamps the state changes
the schedulers already make: PENDING = QUEUE_START, EXECUTING = COMPUTE_START, RELEASED =
COMPUTE_END; the server stamps REQUEST_START and REQUEST_END. Untraced requests pay nothing.
File format (Triton's "triton" mode): a JSON array holding, per trace,
`{"id", "model_name", "model_version"[, "request_id"]}` then `{"id", "timestamps": [{"name", "ns"}]}`.
In "opentelemetry" mode each finished trace goes to `otel.OtelExporter` instead (spans over
OTLP/HTTP) and the settings body has no `log_frequency`/`trace_file` (they mean nothing there).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.request import InferenceRequest, RequestState
from ..core.stats import EPOCH_OFFSET_NS
from ..errors import ErrorCode, TritonError, invalid_arg

log = logging.getLogger("triton_asyncio.trace")

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
_STAMPS = {RequestState.PENDING: "QUEUE_START", RequestState.EXECUTING: "COMPUTE_START",
           RequestState.RELEASED: "COMPUTE_END"}
_INT_KEYS = {"trace_rate": 0, "trace_count": -1, "log_frequency": 0}  # key -> smallest value


def _now() -> int:
    return time.perf_counter_ns() + EPOCH_OFFSET_NS


@dataclass(slots=True)
class Trace:
    id: int
    model_name: str
    model_version: int
    request_id: str
    stamps: list[tuple[str, int]] = field(default_factory=list)


class TraceSink(Protocol):
    """Where finished traces go instead of the trace file (the OpenTelemetry exporter)."""

    def export(self, trace: Trace) -> None: ...

    def close(self) -> None: ...


class TracedRequest(InferenceRequest):
    """A sampled request: same slots as InferenceRequest, state changes stamped into its trace."""

    __slots__ = ()

    def set_state(self, new: RequestState) -> None:
        InferenceRequest.set_state(self, new)
        trace = _LIVE.get(id(self))
        if trace is not None:
            trace.stamps.append((_STAMPS[new], _now()))


_LIVE: dict[int, Trace] = {}  # id(request) -> its trace, while the request runs


@dataclass(slots=True)
class _State:
    """What sampling consumes: a request counter and the traces left."""

    seen: int = 0
    left: int = -1


class TraceManager:
    def __init__(self, *, level: tuple[str, ...] = (), rate: int = 1000, count: int = -1,
                 log_frequency: int = 0, file: str = "", mode: str = "triton",
                 config: tuple[tuple[str, str, str], ...] = ()) -> None:
        """`config` is --trace-config as given; only opentelemetry mode reads it (its own keys)."""
        self.startup = {"trace_level": list(level) or ["OFF"], "trace_rate": rate, "trace_count": count,
                        "log_frequency": log_frequency}
        self.file = file
        self.mode = mode
        self.global_settings: dict[str, Any] = dict(self.startup)
        self.overrides: dict[str, dict[str, Any]] = {}
        self._states: dict[str, _State] = {"": _State(left=count)}
        self._next_id = 1
        self._pending: list[Trace] = []
        self._files_written = 0
        self.active = False
        self.sink: TraceSink | None = _otel_sink(config) if mode == "opentelemetry" else None
        self._refresh()

    # -- settings -----------------------------------------------------------------------------
    def effective(self, model: str = "") -> dict[str, Any]:
        return {**self.global_settings, **self.overrides.get(model, {})} if model else self.global_settings

    def settings(self, model: str = "") -> dict[str, Any]:
        """The GET body: every value a string except the level list."""
        eff = self.effective(model)
        state = self._states.get(model if model in self.overrides else "")
        count = state.left if state is not None else eff["trace_count"]
        body = {"trace_level": list(eff["trace_level"]), "trace_rate": str(eff["trace_rate"]),
                "trace_count": str(count), "log_frequency": str(eff["log_frequency"]),
                "trace_file": self.file, "trace_mode": self.mode}
        if self.sink is not None:
            del body["log_frequency"], body["trace_file"]
        return body

    def update(self, body: Any, model: str = "") -> dict[str, Any]:
        """Apply a POST body (validated as a whole first); null clears a model's override (or
        resets a global setting to its start-up value)."""
        changes = validate(body)
        target = self.overrides.setdefault(model, {}) if model else self.global_settings
        for key, value in changes.items():
            if value is None:
                if model:
                    target.pop(key, None)
                else:
                    target[key] = self.startup[key]
            else:
                target[key] = value
        if model and not target:
            del self.overrides[model]
        key = model if model in self.overrides else ""
        if "trace_count" in changes or "trace_rate" in changes or key not in self._states:
            self._states[key] = _State(left=int(self.effective(key)["trace_count"]))
        self._refresh()
        return self.settings(model)

    def _refresh(self) -> None:
        self.active = any(s["trace_level"] != ["OFF"] for s in (self.global_settings, *self.overrides.values())
                          if "trace_level" in s)

    # -- sampling (only when `active`) ------------------------------------------------------
    def start(self, request: InferenceRequest, model_name: str, version: int) -> bool:
        """Sample one request; when chosen, stamp REQUEST_START and trace its state changes."""
        key = model_name if model_name in self.overrides else ""
        eff = self.effective(key)
        if eff["trace_level"] == ["OFF"] or type(request) is not InferenceRequest:
            return False
        state = self._states[key]
        seen, state.seen = state.seen, state.seen + 1
        rate = int(eff["trace_rate"])
        if state.left == 0 or rate == 0 or seen % rate:
            return False
        if state.left > 0:
            state.left -= 1
        trace = Trace(self._next_id, model_name, version, request.id, [("REQUEST_START", _now())])
        self._next_id += 1
        request.__class__ = TracedRequest
        _LIVE[id(request)] = trace
        return True

    def end(self, request: InferenceRequest) -> None:
        """REQUEST_END: the response is ready. The trace is queued for the file."""
        trace = _LIVE.pop(id(request), None)
        if trace is None:
            return
        trace.stamps.append(("REQUEST_END", _now()))
        if self.sink is not None:
            try:
                self.sink.export(trace)
            except Exception:  # a tracing fault must never fail the request it observed
                log.exception("failed to export trace %d", trace.id)
            return
        self._pending.append(trace)
        frequency = int(self.global_settings["log_frequency"])
        if frequency > 0 and len(self._pending) >= frequency:
            self._write(f"{self.file}.{self._files_written}")
            self._files_written += 1

    def close(self) -> None:
        """At exit: every trace not yet written goes to trace_file (log_frequency 0's only write);
        the OpenTelemetry exporter flushes its batch."""
        if self.sink is not None:
            self.sink.close()
            return
        if self._pending:
            frequency = int(self.global_settings["log_frequency"])
            self._write(self.file if frequency == 0 else f"{self.file}.{self._files_written}")

    def _write(self, path: str) -> None:
        traces, self._pending = self._pending, []
        if not self.file:
            return  # traces with nowhere to go are dropped, as Triton does without a trace file
        doc: list[dict[str, Any]] = []
        for t in traces:
            head: dict[str, Any] = {"id": t.id, "model_name": t.model_name, "model_version": t.model_version}
            if t.request_id:
                head["request_id"] = t.request_id
            doc.append(head)
            doc.append({"id": t.id, "timestamps": [{"name": n, "ns": ns} for n, ns in t.stamps]})
        try:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f)
        except OSError as e:
            log.error("failed to write trace file '%s': %s", path, e)


def _otel_sink(config: tuple[tuple[str, str, str], ...]) -> TraceSink:
    from .otel import OtelExporter, parse_settings  # lazily: only this mode needs the SDK
    try:
        settings = parse_settings(config)
    except ValueError as e:
        raise invalid_arg(str(e)) from None
    return OtelExporter(settings)


def validate(body: Any) -> dict[str, Any]:
    """A trace-setting POST body -> {key: value or None}; Triton's errors otherwise."""
    if not isinstance(body, dict):
        raise invalid_arg("trace setting request must be a JSON object")
    if body.get("trace_file") is not None:
        raise TritonError(ErrorCode.UNSUPPORTED, "trace file location can not be updated through network protocol")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key == "trace_file":
            continue
        if key == "trace_level":
            changes[key] = None if value is None else _levels(value)
        elif key in _INT_KEYS:
            changes[key] = None if value is None else _integer(key, value)
        else:
            raise invalid_arg(f"Unknown trace setting '{key}'")
    return changes


def _levels(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_arg("expect an array of strings for 'trace_level'")
    levels = [v.upper() for v in value] or ["OFF"]
    for level in levels:
        if level not in LEVELS:
            raise invalid_arg(f"Unsupported trace level: '{level}'")
    if "OFF" in levels and len(levels) > 1:
        raise invalid_arg("Trace level 'OFF' can not be combined with other trace levels")
    return sorted(set(levels), key=LEVELS.index)


def _integer(key: str, value: Any) -> int:
    if not isinstance(value, str):
        raise invalid_arg(f"expect a string for '{key}'")
    try:
        number = int(value)
    except ValueError:
        raise invalid_arg(f"Unable to parse '{key}', got: {value}") from None
    if number < _INT_KEYS[key]:
        raise invalid_arg(f"Invalid value for '{key}', expected a value >= {_INT_KEYS[key]}, got: {value}")
    return number
