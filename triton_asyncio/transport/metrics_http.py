"""The `/metrics` listener (port 8002), reusing HttpProtocol with a tiny app.

Rules: path `/metrics` or `/metrics/` renders; any other path is 200 with an empty body (Triton's
quirk); non-GET is 405.
"""
from __future__ import annotations

from ..metrics.exposition import render
from ..metrics.model_metrics import model_families
from ..server.inference_server import InferenceServer
from .http.messages import HttpRequest, HttpResponse

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def metrics_app(server: InferenceServer):
    def app(request: HttpRequest) -> HttpResponse:
        if request.method not in (b"GET", b"HEAD"):
            return HttpResponse(405, list(_TEXT), [])
        path = request.target.split(b"?", 1)[0]
        if path not in (b"/metrics", b"/metrics/"):
            return HttpResponse(200, list(_TEXT), [])
        rows = [(m.name, m.version_str, m.stats, m.scheduler.inflight_count())
                for name in sorted(server.manager.models) for m in server.manager.ready_versions(name)]
        return HttpResponse(200, list(_TEXT), [render(model_families(rows))])

    return app
