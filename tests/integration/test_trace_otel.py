"""OpenTelemetry trace mode through a real server and a real OTLP/HTTP receiver on loopback.

The receiver is a tiny http.server that accepts POST /v1/traces and decodes each body with
opentelemetry-proto's ExportTraceServiceRequest; the test waits (deadline loop) until the spans
of its traced requests arrive. Skipped when the `trace` extra is not installed.
"""
from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from .conftest import start_server, stop_server

pytest.importorskip("opentelemetry.sdk.trace")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class _Receiver(http.server.BaseHTTPRequestHandler):
    spans: list = []
    resources: list[dict[str, str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            for rs in request.resource_spans:
                self.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"spans": [], "resources": [], "lock": threading.Lock()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}/v1/traces", handler
    httpd.shutdown()
    httpd.server_close()


def _attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


def test_spans_arrive_with_model_name_and_stage_events(example_repo, tmp_path, receiver):
    url, handler = receiver
    srv = start_server(example_repo, str(tmp_path / "server.log"), "--trace-config=mode=opentelemetry",
                       "--trace-config=level=TIMESTAMPS", "--trace-config=rate=1",
                       f"--trace-config=opentelemetry,url={url}",
                       "--trace-config=opentelemetry,resource=service.name=otel-test",
                       "--trace-config=opentelemetry,bsp_schedule_delay=100")
    try:
        client = httpclient.InferenceServerClient(srv.http_url)
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        for _ in range(3):
            client.infer("simple", inputs)
        settings = client.get_trace_settings()
        assert settings["trace_mode"] == "opentelemetry" and "trace_file" not in settings
        client.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with handler.lock:
                models = [s for s in handler.spans if s.name == "simple"]
            if len(models) >= 3:
                break
            time.sleep(0.1)
        with handler.lock:
            spans, resources = list(handler.spans), list(handler.resources)
    finally:
        assert stop_server(srv) == 0, srv.log()
    models = [s for s in spans if s.name == "simple"]
    assert len(models) == 3, [s.name for s in spans]
    assert {"service.name": "otel-test"}.items() <= resources[0].items()
    by_id = {s.span_id: s for s in spans}
    for model in models:
        assert _attrs(model)["triton.model_name"] == "simple"
        assert _attrs(model)["triton.model_version"] == 1
        assert [e.name for e in model.events] == ["REQUEST_START", "QUEUE_START", "REQUEST_END"]
        assert by_id[model.parent_span_id].name == "InferRequest"
        compute = [s for s in spans if s.parent_span_id == model.span_id]
        assert [s.name for s in compute] == ["compute"]
        assert [e.name for e in compute[0].events] == ["COMPUTE_START", "COMPUTE_END"]
        stamps = [e.time_unix_nano for e in (*model.events, *compute[0].events)]
        assert all(s > 1_600_000_000 * 10**9 for s in stamps)  # wall-clock epoch ns, not monotonic
        assert model.start_time_unix_nano <= compute[0].start_time_unix_nano <= compute[0].end_time_unix_nano
        assert compute[0].end_time_unix_nano <= model.end_time_unix_nano


def test_bad_opentelemetry_setting_refuses_to_start(example_repo, tmp_path):
    srv = start_server(example_repo, str(tmp_path / "server.log"), "--trace-config=mode=opentelemetry",
                       "--trace-config=opentelemetry,bsp_max_queue_size=nope", wait_ready=False)
    assert srv.proc.wait(60) == 1
    assert "opentelemetry,bsp_max_queue_size expects an integer" in srv.log()
