"""Prometheus metrics through a real server: Triton's families and values after known traffic."""
from __future__ import annotations

import os
import re
import shutil
import socket
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from .conftest import start_server, stop_server

# queued for 5 s waiting for a batch of 4, rejected after 1 ms: a deterministic REJECTED failure
_REJECTING = ("dynamic_batching {\n  preferred_batch_size: [ 4 ]\n  max_queue_delay_microseconds: 5000000\n"
              "  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 1000 }\n}\n")


def copy_model(src_repo: str, dst_repo, src: str, dst: str, append: str = "", replace_batching: str = "") -> None:
    shutil.copytree(os.path.join(src_repo, src), dst_repo / dst)
    path = dst_repo / dst / "config.pbtxt"
    text = path.read_text(encoding="utf-8").replace(f'name: "{src}"', f'name: "{dst}"')
    if replace_batching:
        text = re.sub(r"dynamic_batching \{.*?\n\}\n", replace_batching, text, flags=re.S)
    path.write_text(text + append, encoding="utf-8")


@pytest.fixture(scope="module")
def metrics_server(example_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics_repo")
    copy_model(example_repo, root, "simple", "simple", append="\nresponse_cache { enable: true }\n")
    copy_model(example_repo, root, "simple", "simple_plain")
    copy_model(example_repo, root, "simple_dyna", "simple_reject", replace_batching=_REJECTING)
    srv = start_server(str(root), str(tmp_path_factory.mktemp("log") / "metrics.log"),
                       "--cache-config", "local,size=1048576", "--metrics-interval-ms", "100",
                       "--metrics-config", "summary_latencies=true", "--metrics-config", "histogram_latencies=true")
    yield srv
    assert stop_server(srv) == 0, srv.log()


def _infer(client, model: str, a: np.ndarray) -> None:
    inputs = [httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
              httpclient.InferInput("INPUT1", list(a.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    client.infer(model, inputs)


def scrape(srv) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value; the parser names counter samples `<family>_total`, Triton
    does not (the raw text is checked for that separately)."""
    return {(s.name.removesuffix("_total") if fam.type == "counter" else s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_families_after_known_traffic(metrics_server):
    client = httpclient.InferenceServerClient(metrics_server.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    _infer(client, "simple", a)
    _infer(client, "simple", a)  # a cache hit
    _infer(client, "simple_plain", a)
    with pytest.raises(InferenceServerException, match="Request timeout expired"):
        _infer(client, "simple_reject", a)

    text = scrape(metrics_server)
    found = samples(text)
    assert value(found, "nv_inference_request_success", model="simple", version="1") == 2
    assert value(found, "nv_inference_request_success", model="simple_plain", version="1") == 1
    assert value(found, "nv_inference_count", model="simple", version="1") == 1  # cache hits excluded
    assert value(found, "nv_inference_exec_count", model="simple", version="1") == 1
    rejected = {r: value(found, "nv_inference_request_failure", model="simple_reject", version="1", reason=r)
                for r in ("BACKEND", "CANCELED", "OTHER", "REJECTED")}
    assert rejected == {"BACKEND": 0, "CANCELED": 0, "OTHER": 0, "REJECTED": 1}
    assert value(found, "nv_inference_pending_request_count", model="simple", version="1") == 0
    assert value(found, "nv_inference_request_duration_us", model="simple_plain", version="1") >= 0

    # Triton's exact style: no `_total`, integral values, alphabetical labels
    assert "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes\n" in text
    assert "# TYPE nv_inference_request_success counter\n" in text
    assert 'nv_inference_request_success{model="simple",version="1"} 2\n' in text
    assert 'nv_inference_request_failure{model="simple_reject",reason="REJECTED",version="1"} 1\n' in text

    # cache families: only for the model that uses the cache
    assert value(found, "nv_cache_num_hits_per_model", model="simple", version="1") == 1
    assert value(found, "nv_cache_num_misses_per_model", model="simple", version="1") == 1
    assert ("nv_cache_num_hits_per_model", frozenset({"model": "simple_plain", "version": "1"}.items())) not in found
    assert value(found, "nv_cache_hit_duration_per_model", model="simple", version="1") >= 0

    # summaries and histogram (enabled by --metrics-config)
    assert value(found, "nv_inference_request_summary_us_count", model="simple_plain", version="1") == 1
    assert value(found, "nv_inference_queue_summary_us_count", model="simple_plain", version="1") == 1
    assert ("nv_inference_request_summary_us_count", frozenset({"model": "simple", "version": "1"}.items())) \
        not in found  # Triton: no request summary for a model using the cache
    quantiles = {k[1] for k in found if k[0] == "nv_inference_compute_infer_summary_us"}
    assert frozenset({"model": "simple_plain", "version": "1", "quantile": "0.99"}.items()) in quantiles
    assert value(found, "nv_inference_first_response_histogram_ms_count", model="simple_plain", version="1") == 1
    assert value(found, "nv_inference_first_response_histogram_ms_bucket", model="simple_plain", version="1",
                 le="+Inf") == 1

    # CPU and memory gauges from /proc
    assert 0 <= value(found, "nv_cpu_utilization") <= 1
    assert value(found, "nv_cpu_memory_total_bytes") > value(found, "nv_cpu_memory_used_bytes") > 0


def test_other_paths_and_methods(metrics_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_server.metrics_port}/other", timeout=10) as r:
        assert r.status == 200 and r.read() == b""


def test_allow_metrics_false_has_no_listener(example_repo, tmp_path):
    srv = start_server(example_repo, str(tmp_path / "nometrics.log"), "--allow-metrics=false")
    try:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=5):
            pass
    finally:
        assert stop_server(srv) == 0, srv.log()
