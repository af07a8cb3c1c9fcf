import itertools

import pytest

from triton_asyncio.codec import routes
from triton_asyncio.codec.routes import Endpoint, RouteError, route

E = Endpoint
TABLE = [
    (b"GET", "/v2/health/live", E.HEALTH_LIVE, {}),
    (b"GET", "/v2/health/ready", E.HEALTH_READY, {}),
    (b"GET", "/v2", E.SERVER_METADATA, {}),
    (b"GET", "/v2/models/simple", E.MODEL_METADATA, {"model": "simple", "version": ""}),
    (b"GET", "/v2/models/simple/versions/3", E.MODEL_METADATA, {"model": "simple", "version": "3"}),
    (b"GET", "/v2/models/simple/ready", E.MODEL_READY, {"model": "simple", "version": ""}),
    (b"GET", "/v2/models/simple/versions/1/ready", E.MODEL_READY, {"model": "simple", "version": "1"}),
    (b"GET", "/v2/models/simple/config", E.MODEL_CONFIG, {"model": "simple", "version": ""}),
    (b"GET", "/v2/models/simple/stats", E.MODEL_STATS, {"model": "simple", "version": ""}),
    (b"GET", "/v2/models/stats", E.ALL_STATS, {}),
    (b"POST", "/v2/models/simple/infer", E.INFER, {"model": "simple", "version": ""}),
    (b"POST", "/v2/models/simple/versions/12/infer", E.INFER, {"model": "simple", "version": "12"}),
    (b"POST", "/v2/models/simple/generate", E.GENERATE, {"model": "simple", "version": ""}),
    (b"POST", "/v2/models/simple/generate_stream", E.GENERATE_STREAM, {"model": "simple", "version": ""}),
    (b"GET", "/v2/models/simple/trace/setting", E.MODEL_TRACE_SETTING, {"model": "simple", "version": ""}),
    (b"POST", "/v2/models/simple/trace/setting", E.MODEL_TRACE_SETTING, {"model": "simple", "version": ""}),
    (b"GET", "/v2/trace/setting", E.TRACE_SETTING, {}),
    (b"POST", "/v2/trace/setting", E.TRACE_SETTING, {}),
    (b"GET", "/v2/logging", E.LOGGING, {}),
    (b"POST", "/v2/logging", E.LOGGING, {}),
    (b"POST", "/v2/repository/index", E.REPO_INDEX, {"repository": "", "model": ""}),
    (b"POST", "/v2/repository/models/m/load", E.REPO_LOAD, {"repository": "", "model": "m"}),
    (b"POST", "/v2/repository/models/m/unload", E.REPO_UNLOAD, {"repository": "", "model": "m"}),
    (b"POST", "/v2/repository/r/index", E.REPO_NAMED, {"repository": "r", "model": ""}),
    (b"POST", "/v2/repository/r/models/m/load", E.REPO_NAMED, {"repository": "r", "model": "m"}),
    (b"GET", "/v2/systemsharedmemory/status", E.SYS_SHM_STATUS, {"region": ""}),
    (b"GET", "/v2/systemsharedmemory/region/r0/status", E.SYS_SHM_STATUS, {"region": "r0"}),
    (b"POST", "/v2/systemsharedmemory/region/r0/register", E.SYS_SHM_REGISTER, {"region": "r0"}),
    (b"POST", "/v2/systemsharedmemory/register", E.SYS_SHM_REGISTER, {"region": ""}),
    (b"POST", "/v2/systemsharedmemory/unregister", E.SYS_SHM_UNREGISTER, {"region": ""}),
    (b"GET", "/v2/cudasharedmemory/status", E.CUDA_SHM_STATUS, {"region": ""}),
    (b"POST", "/v2/cudasharedmemory/region/c/register", E.CUDA_SHM_REGISTER, {"region": "c"}),
    (b"POST", "/v2/cudasharedmemory/region/c/unregister", E.CUDA_SHM_UNREGISTER, {"region": "c"}),
]


@pytest.mark.parametrize("method,path,endpoint,params", TABLE)
def test_route_table(method, path, endpoint, params):
    assert route(method, path) == (endpoint, params)


def test_query_string_is_ignored():
    assert route(b"POST", "/v2/models/m/infer?x=1&y=/v2") == (E.INFER, {"model": "m", "version": ""})


@pytest.mark.parametrize("path", [
    "/", "/v1", "/v2/", "/v2/health", "/v2/health/alive", "/v2/models", "/v2/models/",
    "/v2/models/m/", "/v2/models/m/versions", "/v2/models/m/versions/x/infer",
    "/v2/models/m/versions/1/trace/setting", "/v2/models/m/bogus", "/v2/models/m/infer/x",
    "/v2/repository/index/x", "/v2/systemsharedmemory/region//status", "/v2/logging/x",
    "/v2/models/m/versions/\u0661/infer",
])
def test_not_found(path):
    with pytest.raises(RouteError) as e:
        route(b"GET", path)
    assert (e.value.status, e.value.message) == (404, "Not Found")


@pytest.mark.parametrize("method,path", [
    (b"POST", "/v2/health/live"), (b"POST", "/v2"), (b"GET", "/v2/models/m/infer"),
    (b"POST", "/v2/models/m"), (b"PUT", "/v2/models/m/trace/setting"), (b"POST", "/v2/models/stats"),
    (b"GET", "/v2/repository/index"), (b"GET", "/v2/repository/r/index"),
    (b"POST", "/v2/systemsharedmemory/status"), (b"GET", "/v2/cudasharedmemory/register"),
    (b"DELETE", "/v2/logging"), (b"GET", "/v2/models/m/generate"),
])
def test_method_not_allowed(method, path):
    with pytest.raises(RouteError) as e:
        route(method, path)
    assert (e.value.status, e.value.message) == (405, "Method Not Allowed")


def test_models_stats_shadows_a_model_named_stats():
    assert route(b"GET", "/v2/models/stats")[0] is E.ALL_STATS
    assert route(b"GET", "/v2/models/stats/ready")[1] == {"model": "stats", "version": ""}


def test_split_matcher_agrees_with_triton_regex():
    """The fast model matcher is checked against Triton's own regex over generated paths."""
    segments = ["m", "versions", "1", "07", "x", "infer", "ready", "trace", "setting", "stats", ""]
    for n in range(1, 5):
        for parts in itertools.product(segments, repeat=n):
            path = "/v2/models/" + "/".join(parts)
            m = routes.MODEL_REGEX.fullmatch(path)
            expected = (m.group(1), m.group(2) or "", m.group(3) or "") if m else None
            assert routes.split_model_path(path) == expected, path
