"""Shared fixtures of the deployment tests: paths, and one real server over a repository with `simple`."""
from __future__ import annotations

import os

import pytest

from tests.integration.conftest import ROOT, _load_repo_builder, start_server, stop_server

DEPLOY = os.path.join(ROOT, "scripts", "deploy")
CHART = os.path.join(DEPLOY, "helm", "triton-asyncio")


@pytest.fixture(scope="session")
def simple_server(tmp_path_factory):
    """A real server (free ports on 127.0.0.1) over a repository holding only `simple`."""
    repo = str(tmp_path_factory.mktemp("deploy_repo") / "models")
    _load_repo_builder().build_repository(repo, ["simple"])
    srv = start_server(repo, str(tmp_path_factory.mktemp("deploy_log") / "server.log"))
    yield srv
    assert stop_server(srv) == 0, srv.log()
