"""The Helm chart, rendered by tests/deploy/helm_render.py (no helm binary here) under several value
sets; built-in kinds are validated against the Kubernetes JSON schemas that kubernetes-validate ships,
and the manifests are checked to agree with each other and with the server's flags and endpoints."""
from __future__ import annotations

import os

import pytest

from triton_asyncio.server.cli_args import parse_args

from .conftest import CHART

pytest.importorskip("yaml")
from .helm_render import Renderer, TemplateError  # noqa: E402  (needs yaml)

VARIANTS = {
    "defaults": {},
    "pvc": {"modelRepository": {"existingClaim": "models"}, "extraArgs": ["--log-verbose=1"]},
    "fixed-replicas": {"autoscaling": {"enabled": False}, "replicaCount": 3,
                       "nodeSelector": {"kubernetes.io/arch": "amd64"}},
    "cpu-only-hpa": {"autoscaling": {"queueMetric": {"enabled": False}}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}


def _by_kind(docs: list[dict]) -> dict[str, dict]:
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs), "one manifest per kind"
    return kinds


@pytest.fixture(scope="module")
def chart() -> Renderer:
    return Renderer(CHART)


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_match_the_kubernetes_schemas(chart, variant):
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    for doc in chart.manifests(VARIANTS[variant]):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: kubernetes-validate has no schema; checked in test_service_monitor
        kv.validate(doc, version, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_deployment_serves_the_three_ports_with_probes(chart, variant):
    kinds = _by_kind(chart.manifests(VARIANTS[variant]))
    pod = kinds["Deployment"]["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"]["port"] in ports
    assert c["resources"]["requests"]["cpu"]
    options = parse_args(c["args"])  # the real server's flag parser
    assert (options.http_port, options.grpc_port, options.metrics_port) == (8000, 8001, 8002)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert list(options.model_repositories) == [mounts["model-repository"]]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    svc = kinds["Service"]["spec"]
    assert svc["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in svc["ports"]} == set(ports)


def test_model_repository_example_or_pvc(chart):
    pod = _by_kind(chart.manifests())["Deployment"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][1].endswith("scripts/make_example_repo.py")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-repository"] == {"name": "model-repository", "emptyDir": {}}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    pod = _by_kind(chart.manifests(VARIANTS["pvc"]))["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    claim = {v["name"]: v for v in pod["volumes"]}["model-repository"]["persistentVolumeClaim"]
    assert claim == {"claimName": "models", "readOnly": True}
    assert pod["containers"][0]["args"][-1] == "--log-verbose=1"


def test_autoscaling(chart):
    kinds = _by_kind(chart.manifests())
    hpa = kinds["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in kinds["Deployment"]["spec"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", kinds["Deployment"]["metadata"]["name"])
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"].startswith("nv_inference_queue_duration_us")
    cpu_only = _by_kind(chart.manifests(VARIANTS["cpu-only-hpa"]))["HorizontalPodAutoscaler"]
    assert [m["type"] for m in cpu_only["spec"]["metrics"]] == ["Resource"]
    fixed = _by_kind(chart.manifests(VARIANTS["fixed-replicas"]))
    assert "HorizontalPodAutoscaler" not in fixed and fixed["Deployment"]["spec"]["replicas"] == 3


def test_service_monitor(chart):
    assert "ServiceMonitor" not in _by_kind(chart.manifests())
    kinds = _by_kind(chart.manifests(VARIANTS["service-monitor"]))
    sm = kinds["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= kinds["Service"]["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in kinds["Service"]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_renderer_rejects_what_it_does_not_know(tmp_path):
    (tmp_path / "templates").mkdir()
    for name in ("Chart.yaml", "values.yaml"):
        (tmp_path / name).write_text(open(os.path.join(CHART, name), encoding="utf-8").read())
    (tmp_path / "templates" / "x.yaml").write_text("a: {{ .Values.nope }}\n")
    with pytest.raises(TemplateError):
        Renderer(str(tmp_path)).render()
    (tmp_path / "templates" / "x.yaml").write_text("{{ range .Values.tolerations }}{{ end }}\n")
    with pytest.raises(TemplateError):
        Renderer(str(tmp_path))
