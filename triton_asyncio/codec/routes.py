"""(method, path) -> Endpoint plus path parameters, in Triton's evaluation order.

Rules: Triton routes on the path only (query string dropped) with full-match regexes tried in
a fixed order: `/v2/models/stats`, `/v2/logging`, model regex, `/v2`, health, system shm,
cuda shm, repository, global trace; then 404. A known path with the wrong method is 405.
The model routes use an equivalent split-based matcher (the infer hot path); the regexes in
MODEL_REGEX etc. are kept as the reference the tests check it against. Pure: no I/O.
"""
from __future__ import annotations

import enum
import re


class Endpoint(enum.Enum):
    HEALTH_LIVE = "health_live"
    HEALTH_READY = "health_ready"
    SERVER_METADATA = "server_metadata"
    MODEL_METADATA = "model_metadata"
    MODEL_READY = "model_ready"
    MODEL_CONFIG = "model_config"
    MODEL_STATS = "model_stats"
    ALL_STATS = "all_stats"
    INFER = "infer"
    GENERATE = "generate"
    GENERATE_STREAM = "generate_stream"
    TRACE_SETTING = "trace_setting"
    MODEL_TRACE_SETTING = "model_trace_setting"
    LOGGING = "logging"
    REPO_INDEX = "repo_index"
    REPO_LOAD = "repo_load"
    REPO_UNLOAD = "repo_unload"
    REPO_NAMED = "repo_named"  # `/v2/repository/$REPO/...`: always 501 in Triton
    SYS_SHM_STATUS = "sys_shm_status"
    SYS_SHM_REGISTER = "sys_shm_register"
    SYS_SHM_UNREGISTER = "sys_shm_unregister"
    CUDA_SHM_STATUS = "cuda_shm_status"
    CUDA_SHM_REGISTER = "cuda_shm_register"
    CUDA_SHM_UNREGISTER = "cuda_shm_unregister"


class RouteError(Exception):
    """No route (404 Not Found) or wrong method (405 Method Not Allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message



def not_found() -> RouteError:
    return RouteError(404, "Not Found")


def method_not_allowed() -> RouteError:
    return RouteError(405, "Method Not Allowed")


MODEL_REGEX = re.compile(
    r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"
    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?")
SERVER_REGEX = re.compile(r"/v2(?:/health/(live|ready))?")
REPOSITORY_REGEX = re.compile(r"/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))")
SYS_SHM_REGEX = re.compile(r"/v2/systemsharedmemory(?:/region/([^/]+))?/(status|register|unregister)")
CUDA_SHM_REGEX = re.compile(r"/v2/cudasharedmemory(?:/region/([^/]+))?/(status|register|unregister)")

_GET, _POST = (b"GET",), (b"POST",)
_GET_POST = (b"GET", b"POST")

# model route kind -> (endpoint, allowed methods)
_MODEL_KINDS: dict[str, tuple[Endpoint, tuple[bytes, ...]]] = {
    "": (Endpoint.MODEL_METADATA, _GET),
    "infer": (Endpoint.INFER, _POST),
    "generate": (Endpoint.GENERATE, _POST),
    "generate_stream": (Endpoint.GENERATE_STREAM, _POST),
    "ready": (Endpoint.MODEL_READY, _GET),
    "config": (Endpoint.MODEL_CONFIG, _GET),
    "stats": (Endpoint.MODEL_STATS, _GET),
    "trace/setting": (Endpoint.MODEL_TRACE_SETTING, _GET_POST),
}
_SHM_ACTIONS = {
    False: {"status": Endpoint.SYS_SHM_STATUS, "register": Endpoint.SYS_SHM_REGISTER,
            "unregister": Endpoint.SYS_SHM_UNREGISTER},
    True: {"status": Endpoint.CUDA_SHM_STATUS, "register": Endpoint.CUDA_SHM_REGISTER,
           "unregister": Endpoint.CUDA_SHM_UNREGISTER},
}


def _allow(method: bytes, allowed: tuple[bytes, ...], endpoint: Endpoint, params: dict):
    if method not in allowed:
        raise method_not_allowed()
    return endpoint, params


def split_model_path(path: str) -> tuple[str, str, str] | None:
    """(model, version, kind) exactly as MODEL_REGEX full-matches `path`, else None."""
    parts = path[11:].split("/")  # after "/v2/models/"
    name, n = parts[0], len(parts)
    if not name:
        return None
    version, rest = "", parts[1:]
    if n >= 3 and parts[1] == "versions" and parts[2].isascii() and parts[2].isdigit():
        version, rest = parts[2], parts[3:]
    kind = "/".join(rest)
    if kind not in _MODEL_KINDS or (rest and not kind):
        return None
    return name, version, kind


def route(method: bytes, path: str) -> tuple[Endpoint, dict[str, str]]:
    """Endpoint and params (`model`, `version` ("" if absent), `region`, `repository`)."""
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    if path.startswith("/v2/models/"):
        if path == "/v2/models/stats":
            return _allow(method, _GET, Endpoint.ALL_STATS, {})
        found = split_model_path(path)
        if found is not None:
            name, version, kind = found
            # Per-model trace has no versioned form: Triton falls through to 404.
            if not (kind == "trace/setting" and version):
                endpoint, allowed = _MODEL_KINDS[kind]
                return _allow(method, allowed, endpoint, {"model": name, "version": version})
    elif path == "/v2/logging":
        return _allow(method, _GET_POST, Endpoint.LOGGING, {})
    return _route_other(method, path)


def _route_other(method: bytes, path: str) -> tuple[Endpoint, dict[str, str]]:
    if path == "/v2":
        return _allow(method, _GET, Endpoint.SERVER_METADATA, {})
    m = SERVER_REGEX.fullmatch(path)
    if m:
        endpoint = Endpoint.HEALTH_LIVE if m.group(1) == "live" else Endpoint.HEALTH_READY
        return _allow(method, _GET, endpoint, {})
    for cuda, regex in ((False, SYS_SHM_REGEX), (True, CUDA_SHM_REGEX)):
        m = regex.fullmatch(path)
        if m:
            action = m.group(2)
            allowed = _GET if action == "status" else _POST
            return _allow(method, allowed, _SHM_ACTIONS[cuda][action], {"region": m.group(1) or ""})
    m = REPOSITORY_REGEX.fullmatch(path)
    if m:
        return _route_repository(method, m)
    if path == "/v2/trace/setting":
        return _allow(method, _GET_POST, Endpoint.TRACE_SETTING, {})
    raise not_found()


def _route_repository(method: bytes, m: re.Match) -> tuple[Endpoint, dict[str, str]]:
    repository, action, model, verb = m.group(1), m.group(2), m.group(3), m.group(4)
    params = {"repository": repository or "", "model": model or ""}
    if repository:
        return _allow(method, _POST, Endpoint.REPO_NAMED, params)
    if action == "index":
        return _allow(method, _POST, Endpoint.REPO_INDEX, params)
    endpoint = Endpoint.REPO_LOAD if verb == "load" else Endpoint.REPO_UNLOAD
    return _allow(method, _POST, endpoint, params)
