"""The Grafana dashboard: valid JSON with a sane layout, and every PromQL expression names only metric
families that a real server exports (scraped once from its /metrics), or cAdvisor's container ones."""
from __future__ import annotations

import json
import os
import re
import urllib.request

from .conftest import DEPLOY

DASHBOARD = os.path.join(DEPLOY, "grafana", "dashboards", "triton.json")
# docker-compose.yml's cadvisor service (or the kubelet's cAdvisor in Kubernetes) exports these
CADVISOR = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
CADVISOR_LABELS = {"name", "container", "pod"}
PROMETHEUS_LABELS = {"instance", "job"}  # added by Prometheus at scrape time
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset"}


def _dashboard() -> dict:
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def _exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (in matchers and by/without/on lists), numbers or strings."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|[smhdwy])*", " ", e)  # numbers, durations
    return {m.group() for m in _NAME.finditer(e)
            if m.group() not in _KEYWORDS and not e[m.end():].lstrip().startswith("(")}


def label_names(expr: str) -> set[str]:
    """Label names in matchers and by/without lists."""
    names = set()
    for block in re.findall(r"\{([^}]*)\}", expr):
        names.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for block in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        names.update(n.strip() for n in block.split(",") if n.strip())
    return names


def _scrape(server) -> tuple[set[str], set[str]]:
    """(family names from # TYPE lines, label names on samples) of the server's /metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    families = set(re.findall(r"^# TYPE (\S+) \w+$", text, re.M))
    labels = set(re.findall(r"[{,]([A-Za-z_]\w*)=\"", text))
    return families, labels


def test_metric_name_extraction():
    expr = ('sum by (model) (rate(nv_a{model=~"$model"}[$__rate_interval])) / clamp_min(sum without (x) '
            '(nv_b offset 5m), 1e-9) / 1000 or on (pod) container_c')
    assert metric_names(expr) == {"nv_a", "nv_b", "container_c"}
    assert label_names(expr) == {"model", "x"}


def test_dashboard_layout():
    dash = _dashboard()
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["targets"] and all(t["expr"].count("(") == t["expr"].count(")") for t in p["targets"])
    refs = set(re.findall(r"\$(\w+)", " ".join(_exprs(dash)))) - {"__rate_interval"}
    assert refs <= {v["name"] for v in dash["templating"]["list"]}


def test_dashboard_covers_the_brief():
    used = set().union(*map(metric_names, _exprs(_dashboard())))
    assert used >= {"nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                    "nv_inference_exec_count", "nv_inference_request_duration_us",
                    "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                    "nv_inference_pending_request_count"}


def test_promql_names_only_exported_families(simple_server):
    families, labels = _scrape(simple_server)
    assert "nv_inference_request_success" in families
    dash = _dashboard()
    exprs = _exprs(dash)
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("type") == "query"]
    unknown = {}
    for expr in exprs:
        expr_clean = re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", expr)
        for name in metric_names(expr_clean) - families - CADVISOR:
            unknown.setdefault(name, expr)
        bad_labels = label_names(expr) - labels - PROMETHEUS_LABELS - CADVISOR_LABELS
        assert not bad_labels, f"labels {bad_labels} not on the server's samples: {expr}"
    assert not unknown, f"families the server does not export: {unknown}"
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["definition"])
            assert m and m.group(2) in labels | PROMETHEUS_LABELS, v
