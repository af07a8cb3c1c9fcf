"""The Dockerfiles and docker-compose.yml, checked without docker: parsed instructions, paths that
exist in the build context, flags the real CLI parser accepts, and compose, Prometheus and Grafana
files that agree on service names, ports and mounts."""
from __future__ import annotations

import configparser
import io
import json
import os
import re

import pytest

from triton_asyncio.server.cli_args import parse_args

from .conftest import DEPLOY, ROOT

yaml = pytest.importorskip("yaml")

PORTS = {"8000", "8001", "8002"}
READY = "http://127.0.0.1:8000/v2/health/ready"


def _dockerfile(name: str) -> list[dict]:
    parser_mod = pytest.importorskip("dockerfile_parse")
    with open(os.path.join(DEPLOY, name), "rb") as f:
        return parser_mod.DockerfileParser(fileobj=io.BytesIO(f.read())).structure


def _instructions(structure: list[dict], kind: str) -> list[str]:
    return [i["value"] for i in structure if i["instruction"] == kind]


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg


def _load_yaml(*parts: str):
    with open(os.path.join(DEPLOY, *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _dockerignore_allows(name: str, src: str) -> bool:
    with open(os.path.join(DEPLOY, name + ".dockerignore"), encoding="utf-8") as f:
        allowed = [line[1:].rstrip("/") for line in f.read().splitlines() if line.startswith("!")]
    return any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_runs_the_server_as_a_non_root_user(name):
    s = _dockerfile(name)
    assert set(" ".join(_instructions(s, "EXPOSE")).split()) == PORTS
    users = _instructions(s, "USER")
    assert users and users[-1] not in ("root", "0")
    order = [i["instruction"] for i in s]
    assert order.index("USER") < order.index("CMD")
    cmd = json.loads(_instructions(s, "CMD")[-1])
    assert cmd == ["triton-asyncio", "--model-repository=/models"]
    console = _setup_cfg()["options.entry_points"]["console_scripts"]
    assert re.search(r"^\s*triton-asyncio\s*=", console, re.M)
    assert list(parse_args(cmd[1:]).model_repositories) == ["/models"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_healthcheck_asks_for_readiness(name):
    (check,) = _instructions(_dockerfile(name), "HEALTHCHECK")
    assert "--interval=" in check and "--start-period=" in check
    exec_form = json.loads(check[check.index("CMD") + 3:].strip())
    assert exec_form[:2] == ["python", "-c"] and READY in exec_form[2]
    compile(exec_form[2], "healthcheck", "exec")


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_copied_paths_exist_and_pass_the_dockerignore(name):
    for value in _instructions(_dockerfile(name), "COPY"):
        *sources, _dest = value.split()
        for src in sources:
            assert os.path.exists(os.path.join(ROOT, src)), src
            assert _dockerignore_allows(name, src), f"{src} is excluded by {name}.dockerignore"


@pytest.mark.parametrize(("name", "base", "extras"), [
    ("Dockerfile", r"python:3\.11-slim$", {"models"}),
    ("Dockerfile.gpu", r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-ubuntu\d\d\.\d\d$", {"gpu", "models"}),
])
def test_base_image_and_installed_extras(name, base, extras):
    s = _dockerfile(name)
    (image,) = _instructions(s, "FROM")
    assert re.match(base, image), image
    runs = " ".join(_instructions(s, "RUN"))
    (spec,) = re.findall(r'pip install "/tmp/src\[([\w,]+)\]"', runs)
    assert set(spec.split(",")) == extras
    declared = set(_setup_cfg()["options.extras_require"])
    # the `gpu` extra is optional: pip only warns for an extra that setup.cfg does not declare
    assert extras - {"gpu"} <= declared
    assert "scripts/make_example_repo.py /models" in runs


def test_compose_services_ports_and_mounts():
    compose = _load_yaml("docker-compose.yml")
    services = compose["services"]
    assert set(services) >= {"triton", "prometheus", "grafana", "cadvisor"}
    triton = services["triton"]
    build = triton["build"]
    assert os.path.realpath(os.path.join(DEPLOY, build["context"])) == os.path.realpath(ROOT)
    assert os.path.isfile(os.path.join(ROOT, build["dockerfile"]))
    assert {p.split(":")[-1] for p in triton["ports"]} == PORTS
    parse_args(triton["command"][1:])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert os.path.exists(os.path.join(DEPLOY, host)), f"{name}: {host} is missing"


def test_prometheus_scrapes_the_compose_services():
    compose, prom = _load_yaml("docker-compose.yml"), _load_yaml("prometheus", "prometheus.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert f"--config.file={mounts['./prometheus/prometheus.yml']}" in compose["services"]["prometheus"]["command"]
    targets = {job["job_name"]: t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets["triton"] == "triton:8002"
    assert targets["cadvisor"].split(":")[0] in compose["services"]


def test_grafana_provisioning_matches_compose_and_dashboard():
    compose = _load_yaml("docker-compose.yml")
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    datasources = _load_yaml("grafana", "provisioning", "datasources", "prometheus.yml")["datasources"]
    (ds,) = datasources
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    (provider,) = _load_yaml("grafana", "provisioning", "dashboards", "triton.yml")["providers"]
    assert provider["options"]["path"] == mounts["./grafana/dashboards"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    rel = os.path.relpath(home, mounts["./grafana/dashboards"])
    with open(os.path.join(DEPLOY, "grafana", "dashboards", rel), encoding="utf-8") as f:
        dashboard = json.load(f)
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
