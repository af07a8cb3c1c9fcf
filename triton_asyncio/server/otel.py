"""OpenTelemetry trace export: `--trace-config mode=opentelemetry`.

Rules (Triton's trace.md, "OpenTelemetry trace support"): each traced request becomes a minimal
Triton trace of three spans, exported through the OTLP/HTTP exporter behind a Batch Span
Processor:

* the top-level span `InferRequest` from REQUEST_START to REQUEST_END;
* its child, the model span, named after the model, with the events REQUEST_START, QUEUE_START
  and REQUEST_END and the attributes `triton.model_name`, `triton.model_version`,
  `triton.trace_id`, `triton.trace_parent_id` (and `triton.request_id` when the request has one);
* the model span's child `compute`, with the events COMPUTE_START and COMPUTE_END.

A stamp the request never reached (a request that failed validation is never queued) is simply
absent. Settings come from `--trace-config opentelemetry,<key>=<value>`: `url` (default
`http://localhost:4318/v1/traces`; a bare `host:port/path` gets `http://`), `resource`
(`key=value`, repeatable; default `service.name=triton-inference-server`), `bsp_max_queue_size`
(2048), `bsp_schedule_delay` (ms, 5000), `bsp_max_export_batch_size` (512, at most the queue size).
The opentelemetry packages are imported only here, only in this mode: without them the server
refuses to start and names the `trace` extra.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trace import Trace

log = logging.getLogger("triton_asyncio.trace")

DEFAULT_URL = "http://localhost:4318/v1/traces"
_BSP_DEFAULTS = {"bsp_max_queue_size": 2048, "bsp_schedule_delay": 5000, "bsp_max_export_batch_size": 512}
_MODEL_EVENTS = ("REQUEST_START", "QUEUE_START", "REQUEST_END")
_COMPUTE_EVENTS = ("COMPUTE_START", "COMPUTE_END")
MISSING = ("OpenTelemetry trace mode needs the opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http "
           "packages: pip install 'triton_asyncio[trace]'")


def parse_settings(settings: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """The `opentelemetry,<key>=<value>` entries of --trace-config -> exporter settings.
    Raises ValueError with the offending setting on a bad value."""
    out: dict[str, Any] = {"url": DEFAULT_URL, "resource": {"service.name": "triton-inference-server"},
                           **_BSP_DEFAULTS}
    for mode, key, value in settings:
        if mode != "opentelemetry":
            continue
        if key == "url":
            out["url"] = value if "://" in value else f"http://{value}"
        elif key == "resource":
            name, eq, attr = value.partition("=")
            if not eq or not name:
                raise ValueError(f"opentelemetry,resource expects <key>=<value>, got: {value}")
            out["resource"][name] = attr
        elif key in _BSP_DEFAULTS:
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"opentelemetry,{key} expects an integer, got: {value}") from None
            if number <= 0:
                raise ValueError(f"opentelemetry,{key} must be positive, got: {value}")
            out[key] = number
        else:
            log.warning("ignoring unknown trace setting 'opentelemetry,%s'", key)
    if out["bsp_max_export_batch_size"] > out["bsp_max_queue_size"]:
        raise ValueError("opentelemetry,bsp_max_export_batch_size must be <= bsp_max_queue_size")
    return out


class OtelExporter:
    """Turns finished `Trace`s into spans; the SDK's batch processor sends them off the loop."""

    def __init__(self, settings: dict[str, Any]) -> None:
        try:  # lazily: the packages are an optional extra, needed only in this mode
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import set_span_in_context
        except ImportError as e:
            raise RuntimeError(f"{MISSING} ({e})") from None
        self.url = settings["url"]
        # A private provider, not the global one: the server's spans must not mix with (or be
        # swallowed by) whatever an embedding application configured.
        self._provider = TracerProvider(resource=Resource.create(settings["resource"]))
        self._provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=self.url), max_queue_size=settings["bsp_max_queue_size"],
            schedule_delay_millis=settings["bsp_schedule_delay"],
            max_export_batch_size=settings["bsp_max_export_batch_size"]))
        self._tracer = self._provider.get_tracer("triton_asyncio")
        self._in_context = set_span_in_context

    def export(self, trace: Trace) -> None:
        stamps = dict(trace.stamps)
        start, end = stamps["REQUEST_START"], stamps.get("REQUEST_END", trace.stamps[-1][1])
        root = self._tracer.start_span("InferRequest", start_time=start)
        model = self._tracer.start_span(trace.model_name, context=self._in_context(root), start_time=start)
        model.set_attributes({"triton.model_name": trace.model_name, "triton.model_version": trace.model_version,
                              "triton.trace_id": trace.id, "triton.trace_parent_id": 0})
        if trace.request_id:
            model.set_attribute("triton.request_id", trace.request_id)
        for name in _MODEL_EVENTS:
            if name in stamps:
                model.add_event(name, timestamp=stamps[name])
        if "COMPUTE_START" in stamps:
            compute = self._tracer.start_span("compute", context=self._in_context(model),
                                              start_time=stamps["COMPUTE_START"])
            for name in _COMPUTE_EVENTS:
                if name in stamps:
                    compute.add_event(name, timestamp=stamps[name])
            compute.end(end_time=stamps.get("COMPUTE_END", end))
        model.end(end_time=end)
        root.end(end_time=end)

    def close(self) -> None:
        """Flush what the batch processor holds, then stop its worker thread."""
        self._provider.shutdown()
