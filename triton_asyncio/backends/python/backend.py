"""The Python backend (server side): one stub process per instance, requests over IPC, restarts.

Rules: `execute` runs on the instance's worker thread (inline_ok = False: it waits on another
process) and blocks on an Event the stub's reader thread sets. The reader thread only decodes and
hands over: BLS calls go to this instance's BLS pool, never the reader and never the event loop.
A stub that dies fails everything in flight on it at once (INTERNAL, naming the model, the
instance and the exit code or signal), the instance reports unhealthy, and a restart thread
starts a new stub and re-runs initialize, retrying with back-off until the model is unloaded.

Config parameters (`parameters { key: ... value { string_value: ... } }`):
  EXECUTION_ENV_PATH        a directory holding bin/python: the stub runs with that interpreter
                            ($$TRITON_MODEL_DIRECTORY expands to the model directory; packed
                            .tar.gz environments are not supported)
  execute_timeout_seconds   an execute running longer is abandoned: the stub is killed, the batch
                            fails with an INTERNAL error and the stub restarts (default: none)
  stub_timeout_seconds      start-up, initialize and finalize limit (default 30)
  arena_byte_size           size of each of the two shared-memory arenas per stub (default 256 MiB;
                            sparse, so only the pages tensors touch cost memory)
  stub_memory_limit_bytes   beyond Triton: after an execute, a stub whose resident memory exceeds
                            this is recycled (stopped and started again, initialize re-run) before
                            it takes the next batch, so a model that leaks cannot take the host
                            down; requests meanwhile wait for the new stub (default: no limit)
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf import json_format

from ...core.datatype import wire_to_config
from ...core.request import InferenceRequest, RequestedOutput
from ...core.response import InferenceResponse
from ...core.tensor import Tensor
from ...errors import ErrorCode, TritonError, internal, invalid_arg, unavailable, unsupported
from ..base import Backend, ModelInstance, ModelLocation
from ..iospec import outputs_of, shape_str
from . import arena, ipc
from .process import StubProcess, StubState

log = logging.getLogger("triton_asyncio.backends.python")

_INT64_PATHS = (("input", "dims"), ("output", "dims"))
_BLS_THREADS = 8
_CANCEL_POLL_S = 0.05  # how soon a long execute hears that a client went away


def _param(config: Any, key: str, default: str | None = None) -> str | None:
    return config.parameters[key].string_value if key in config.parameters else default


def _float_param(config: Any, key: str, default: float | None) -> float | None:
    value = _param(config, key)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise invalid_arg(f"failed to convert {key} '{value}' to a number of seconds") from None


def config_json(config: Any) -> str:
    """The config in Triton's JSON form (spec 4.7) as `args['model_config']` carries it.

    Backends sit below repository/, whose config_to_json orders keys exactly as the /config
    endpoint does; this is the same content, with dims as numbers as Triton prints them."""
    doc = json_format.MessageToDict(config, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    for kind, field in _INT64_PATHS:
        for io in doc.get(kind, []):
            io[field] = [int(d) for d in io.get(field, [])]
            if "reshape" in io:
                io["reshape"]["shape"] = [int(d) for d in io["reshape"].get("shape", [])]
    return json.dumps(doc)


def interpreter(config: Any, model_dir: str) -> str:
    """sys.executable, or <EXECUTION_ENV_PATH>/bin/python."""
    env = _param(config, "EXECUTION_ENV_PATH")
    if not env:
        return sys.executable
    env = env.replace("$$TRITON_MODEL_DIRECTORY", model_dir)
    if env.endswith((".tar.gz", ".tgz")):
        raise unsupported(f"EXECUTION_ENV_PATH '{env}': packed (tar.gz) environments are not supported; "
                          "unpack it and point EXECUTION_ENV_PATH at the directory")
    python = os.path.join(env, "bin", "python")
    if not os.path.isdir(env) or not os.access(python, os.X_OK):
        raise invalid_arg(f"EXECUTION_ENV_PATH '{env}' is not a directory holding bin/python")
    return python


class PythonBackend(Backend):
    name = "python"
    default_model_filename = "model.py"

    def __init__(self, config: Any, location: ModelLocation) -> None:
        super().__init__(config, location)
        self.model_path = os.path.join(location.version_dir, config.default_model_filename or "model.py")
        if not os.path.isfile(self.model_path):
            raise unavailable(f"unable to find '{self.model_path}' for model '{config.name}'")
        self.interpreter = interpreter(config, location.model_dir)
        self.config_json = config_json(config)

    @classmethod
    def auto_complete_config(cls, config: Any, location: ModelLocation) -> None:
        """Run TritonPythonModel.auto_complete_config in a short-lived stub, as Triton does; skipped
        (no process) when model.py does not mention it."""
        path = os.path.join(location.version_dir, config.default_model_filename or "model.py")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if "auto_complete_config" not in f.read():
                    return
        except OSError:
            return  # create_instance reports the missing file
        stub = StubProcess(interpreter(config, location.model_dir), f"model '{config.name}'", 1 << 20)
        try:
            timeout = _float_param(config, "stub_timeout_seconds", 30.0) or 30.0
            stub.handshake(None, None, ipc.Cmd.READY, timeout)
            done = stub.handshake(ipc.Cmd.AUTO_COMPLETE, {"model_path": path, "config": config_json(config)},
                                  ipc.Cmd.AUTO_COMPLETE_DONE, timeout)
        finally:
            stub.stop(5.0)
        if done["error"] is not None:
            log.error("auto_complete_config of model '%s' failed:\n%s", config.name, done.get("traceback", ""))
            raise internal(f"auto-complete of model '{config.name}' failed: {done['error']}")
        name = config.name
        config.Clear()
        json_format.ParseDict(json.loads(done["config"]), config, ignore_unknown_fields=True)
        config.name = config.name or name

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        return PythonInstance(self, instance_name, kind, device_id)


class _Batch:
    """One execute waiting for EXECUTE_DONE."""

    __slots__ = ("event", "responses", "error", "handles")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.handles: list[int] = []  # its requests' ids, for decoupled streams to drop on failure
        self.responses: list | None = None
        self.error: TritonError | None = None

    def finish(self, responses: list | None, error: TritonError | None) -> None:
        self.responses, self.error = responses, error
        self.event.set()


class PythonInstance(ModelInstance):
    inline_ok = False

    def __init__(self, backend: PythonBackend, name: str, kind: str, device_id: int) -> None:
        super().__init__(name, kind, device_id)
        config = backend.config
        self.backend = backend
        self.model_name = config.name
        self.version = str(backend.location.version)
        self.label = f"model '{self.model_name}' instance '{name}'"
        self.decoupled = bool(config.model_transaction_policy.decoupled)
        self.outputs = {o.name: o for o in outputs_of(config)}
        self.output_names = list(self.outputs)  # requested_output_names() when the client named none
        self.batching = config.max_batch_size > 0
        self.execute_timeout = _float_param(config, "execute_timeout_seconds", None)
        self.stub_timeout = _float_param(config, "stub_timeout_seconds", 30.0) or 30.0
        self.arena_size = int(_param(config, "arena_byte_size", "") or 256 << 20)
        self.memory_limit = _float_param(config, "stub_memory_limit_bytes", None)
        self.init_meta = {
            "model_path": backend.model_path, "model_name": self.model_name, "decoupled": self.decoupled,
            "batching": self.batching,
            "args": {"model_config": backend.config_json, "model_instance_kind": kind.removeprefix("KIND_"),
                     "model_instance_name": name, "model_instance_device_id": str(device_id),
                     "model_repository": backend.location.model_dir, "model_version": self.version,
                     "model_name": self.model_name}}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._batches: dict[int, _Batch] = {}
        self._streaming: dict[int, InferenceRequest] = {}  # decoupled requests not yet final
        self._ready = threading.Event()
        self._stopping = False
        self._finalized = threading.Event()
        self._restart_error: str | None = None
        self._bls = ThreadPoolExecutor(_BLS_THREADS, thread_name_prefix=f"{name}-bls")
        self.stub: StubProcess | None = None
        self._start_stub()  # raises: the load fails with initialize's error
        self._ready.set()

    # -- stub generations ---------------------------------------------------------------------
    def _start_stub(self) -> StubProcess:
        stub = StubProcess(self.backend.interpreter, self.label, self.arena_size)
        try:
            stub.handshake(None, None, ipc.Cmd.READY, self.stub_timeout)
            done = stub.handshake(ipc.Cmd.INIT, self.init_meta, ipc.Cmd.INIT_DONE, self.stub_timeout)
        except BaseException:
            stub.stop(5.0)
            raise
        if done["error"] is not None:
            log.error("initialize of %s failed:\n%s", self.label, done.get("traceback", ""))
            stub.stop(5.0)
            raise internal(f"Failed to initialize {self.label}: {done['error']}")
        self.stub = stub  # before its reader runs: _on_exit tells current from stale stubs by identity
        stub.start_reader(functools.partial(self._on_frame, stub), self._on_exit)
        return stub

    def _on_exit(self, stub: StubProcess) -> None:
        """Reader thread: the stub's channel ended. Fail what was in flight; restart unless stopping."""
        if self._stopping or stub is not self.stub:
            self._finalized.set()  # a finalize waiting on this stub has its answer
            return
        self._ready.clear()
        how = stub.kill_reason or f"the stub process died ({stub.exit_description()})"
        error = internal(f"Failed to process the request(s) for {self.label}: {how}; "
                         "the stub is being restarted")
        log.error("%s: %s; restarting it", self.label, how)
        self._fail_in_flight(error)
        threading.Thread(target=self._restart, name=f"{self.name}-restart", daemon=True).start()

    def _fail_in_flight(self, error: TritonError) -> None:
        with self._lock:
            batches, self._batches = self._batches, {}
            streaming, self._streaming = self._streaming, {}
        for batch in batches.values():
            batch.finish(None, error)
        for request in streaming.values():
            request.response_sink.fail(error)

    def _restart(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                stub = self._start_stub()
            except Exception as exc:  # noqa: BLE001 - any failure means: try again later, never give up silently
                self._restart_error = exc.message if isinstance(exc, TritonError) else f"{type(exc).__name__}: {exc}"
                log.error("restarting %s failed: %s (retrying in %.1f s)", self.label, self._restart_error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if self._stopping:
                stub.stop(5.0)
                return
            self._restart_error = None
            if stub.state is not StubState.DEAD:  # else its own _on_exit has started the next restart
                self._ready.set()
            log.info("%s: stub process restarted (pid %d)", self.label, stub.proc.pid)
            return

    def is_healthy(self) -> bool:
        return self._ready.is_set()

    # -- execute ------------------------------------------------------------------------------
    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        stub = self._ready_stub()
        batch_id = next(self._ids)
        batch = _Batch()
        encoded = []
        with self._lock:
            self._batches[batch_id] = batch
        try:
            for request in requests:
                handle = next(self._ids)
                batch.handles.append(handle)
                encoded.append(self._encode_request(stub, handle, request))
                if self.decoupled:
                    with self._lock:
                        self._streaming[handle] = request
            if stub.state is StubState.DEAD:  # died after _ready_stub: its reader may have missed us
                with self._lock:
                    self._batches.pop(batch_id, None)
                raise internal(f"Failed to process the request(s) for {self.label}: the stub process died")
            stub.send(ipc.Cmd.EXECUTE, {"batch": batch_id, "requests": encoded})
        except OSError:
            pass  # the stub is gone: its reader fails this batch
        except BaseException:
            with self._lock:
                self._batches.pop(batch_id, None)
            raise
        self._wait(stub, batch, requests)
        if self.memory_limit is not None:
            self._recycle_if_bloated(stub)
        if batch.error is not None:
            if self.decoupled:
                with self._lock:
                    for handle in batch.handles:
                        self._streaming.pop(handle, None)
            raise batch.error
        if self.decoupled:
            return [InferenceResponse(self.model_name, self.version, id=r.id) for r in requests]
        return [self._response(stub, request, meta)
                for request, meta in zip(requests, batch.responses, strict=True)]  # type: ignore[arg-type]

    def _wait(self, stub: StubProcess, batch: _Batch, requests: list[InferenceRequest]) -> None:
        """Until EXECUTE_DONE. Meanwhile, tell the stub about requests whose client went away (so
        the model's is_cancelled() sees it) and enforce execute_timeout_seconds. A batch that ends
        at once never polls: the first wait returns as soon as the reader sets the event."""
        deadline = None if self.execute_timeout is None else time.monotonic() + self.execute_timeout
        told: set[int] = set()
        while True:
            step = _CANCEL_POLL_S if deadline is None else min(_CANCEL_POLL_S, max(0.0, deadline - time.monotonic()))
            if batch.event.wait(step):
                return
            if deadline is not None and time.monotonic() >= deadline:
                stub.kill(f"execute exceeded execute_timeout_seconds ({self.execute_timeout:g} s), so the stub "
                          "process was killed")
                batch.event.wait()
                return
            fresh = [h for h, r in zip(batch.handles, requests, strict=False) if r.cancelled and h not in told]
            if fresh:
                told.update(fresh)
                try:
                    stub.send(ipc.Cmd.CANCEL, {"requests": fresh})
                except OSError:
                    pass  # the stub is gone; its reader fails the batch

    def _recycle_if_bloated(self, stub: StubProcess) -> None:
        """Restart a stub over its memory limit between batches (none is in flight on this instance
        now: one execute at a time), unless decoupled responses are still streaming from it."""
        rss = _resident_bytes(stub.proc.pid)
        if rss is None or rss <= self.memory_limit or self._streaming:  # type: ignore[operator]
            return
        log.warning("%s: the stub process uses %d bytes, over stub_memory_limit_bytes (%d): recycling it",
                    self.label, rss, self.memory_limit)
        self._ready.clear()  # the next batch waits for the new stub instead of meeting the dying one
        stub.kill(f"its memory use ({rss} bytes) exceeded stub_memory_limit_bytes ({self.memory_limit:.0f}), "
                  "so the stub process was recycled")

    def _ready_stub(self) -> StubProcess:
        if not self._ready.is_set():
            if self._restart_error is not None:
                raise unavailable(f"{self.label} is not ready: restarting its stub process failed: "
                                  f"{self._restart_error}")
            if not self._ready.wait(self.stub_timeout):
                raise unavailable(f"{self.label} is not ready: its stub process is restarting")
        return self.stub  # type: ignore[return-value]

    def _encode_request(self, stub: StubProcess, handle: int, request: InferenceRequest) -> dict:
        inputs = []
        for name, tensor in request.inputs.items():
            data = tensor.raw if tensor.raw is not None else tensor.array
            inputs.append(arena.to_desc(stub.own, name, tensor.datatype, tensor.shape, data))
        params = {k: v for k, v in request.parameters.items() if isinstance(v, (str, int, float, bool))}
        return {"id": handle, "request_id": request.id, "inputs": inputs,
                "outputs": list(request.outputs) if request.outputs else self.output_names, "flags": request.flags,
                "correlation_id": request.correlation_id, "parameters": params,
                "timeout": request.timeout_us}

    def _response(self, stub: StubProcess, request: InferenceRequest, meta: dict | None) -> InferenceResponse:
        response = InferenceResponse(self.model_name, self.version, id=request.id)
        if meta is None:
            response.error = internal(f"{self.label} returned no response for request '{request.log_id}'")
            return response
        if meta["error"] is not None:
            code, message = meta["error"]
            response.error = TritonError(ErrorCode(code) if 0 <= code <= 7 else ErrorCode.INTERNAL, message)
            return response
        # Every block becomes a view first, so that dropped or rejected outputs free theirs too.
        arrays = [arena.from_desc(stub.peer, desc, stub.frees) for desc in meta["outputs"]]
        try:
            response.outputs = [self._output(desc, array) for desc, array in zip(meta["outputs"], arrays, strict=True)
                                if desc[0] in self.outputs]
        except TritonError as exc:
            response.outputs, response.error = [], exc
        if meta["parameters"]:
            response.parameters = meta["parameters"]
        return response

    def _output(self, desc: tuple, array: Any) -> Tensor:
        """One output, checked against its configured datatype and dims (Triton's messages)."""
        name, datatype, shape = desc[0], desc[1], desc[2]
        spec = self.outputs[name]
        if spec.datatype and datatype != spec.datatype:
            raise invalid_arg(f"unexpected datatype {wire_to_config(datatype)} for inference output '{name}', "
                              f"expecting {spec.config_type}")
        dims = spec.reshape if spec.reshape is not None else spec.dims
        body = shape[1:] if self.batching else shape
        if len(body) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, body, strict=True)):
            expected = ([-1] if self.batching else []) + list(dims)
            raise invalid_arg(f"unexpected shape for output '{name}', model configuration shape is "
                              f"{shape_str(expected)}, inference shape is {shape_str(shape)}")
        return Tensor(name, datatype, list(shape), array=array)

    # -- frames from the stub (reader thread) ---------------------------------------------------
    def _on_frame(self, stub: StubProcess, cmd: ipc.Cmd, meta: Any) -> None:
        if cmd is ipc.Cmd.EXECUTE_DONE:
            with self._lock:
                batch = self._batches.pop(meta["batch"], None)
            if batch is not None:
                error = internal(meta["error"]) if meta["error"] is not None else None
                batch.finish(meta["responses"], error)
        elif cmd is ipc.Cmd.RESPONSE:
            self._on_response(stub, meta)
        elif cmd is ipc.Cmd.BLS_CALL:
            self._bls.submit(self._serve_bls, stub, meta)
        elif cmd is ipc.Cmd.FINALIZE_DONE:
            if meta["error"] is not None:
                log.error("finalize of %s failed: %s", self.label, meta["error"])
            self._finalized.set()
        else:
            log.error("%s: unexpected %s from the stub", self.label, cmd.name)

    def _on_response(self, stub: StubProcess, meta: dict) -> None:
        handle, final = meta["request"], meta["final"]
        with self._lock:
            request = self._streaming.pop(handle, None) if final else self._streaming.get(handle)
        if request is None:
            return  # its stream already failed
        response = None
        if meta["response"] is not None:
            response = self._response(stub, request, meta["response"])
        request.response_sink.send(response, final)
        if request.cancelled and not final:
            try:
                stub.send(ipc.Cmd.CANCEL, {"requests": [handle]})
            except OSError:
                pass  # the stub is gone; its reader handles that

    # -- BLS (pool threads) ---------------------------------------------------------------------
    def _serve_bls(self, stub: StubProcess, meta: dict) -> None:
        call = meta["call"]
        try:
            request = self._bls_request(stub, meta["request"])
            caller = self.backend.caller
            if caller is None:
                raise unavailable("BLS is not available: the backend has no server to call")
            if meta["decoupled"]:
                for response, final in caller.infer_stream(request):
                    self._bls_reply(stub, call, response, None, final)
                return
            self._bls_reply(stub, call, caller.infer(request), None, True)
        except TritonError as exc:
            self._bls_reply(stub, call, None, exc, True)
        except Exception as exc:  # anything else still has to answer the waiting stub
            log.exception("%s: BLS call failed", self.label)
            self._bls_reply(stub, call, None, internal(f"{type(exc).__name__}: {exc}"), True)

    def _bls_request(self, stub: StubProcess, meta: dict) -> InferenceRequest:
        inputs = {d[0]: Tensor(d[0], d[1], list(d[2]), array=arena.from_desc(stub.peer, d, stub.frees))
                  for d in meta["inputs"]}
        outputs = {n: RequestedOutput(n) for n in meta["outputs"]} if meta["outputs"] else None
        return InferenceRequest(meta["model"], meta["version"], id=meta["id"], inputs=inputs, outputs=outputs,
                                parameters=meta["parameters"], flags=meta["flags"],
                                correlation_id=meta["correlation_id"], timeout_us=meta["timeout"])

    def _bls_reply(self, stub: StubProcess, call: int, response: InferenceResponse | None,
                   error: TritonError | None, final: bool) -> None:
        if response is not None and response.error is not None:
            error, response = response.error, None
        encoded = None
        if response is not None:
            outputs = [arena.to_desc(stub.own, t.name, t.datatype, t.shape,
                                     t.array if t.array is not None else t.raw) for t in response.outputs]
            encoded = {"outputs": outputs, "error": None, "parameters": response.parameters or {}}
        elif error is not None:
            encoded = {"outputs": [], "error": (int(error.code), error.message), "parameters": {}}
        try:
            stub.send(ipc.Cmd.BLS_RESULT, {"call": call, "response": encoded, "final": final})
        except OSError:
            pass  # the stub died while we worked; its reader has failed the batch

    # -- unload -------------------------------------------------------------------------------
    def finalize(self) -> None:
        self._stopping = True
        stub = self.stub
        if stub is None:
            return
        if stub.state is StubState.READY:
            try:
                stub.send(ipc.Cmd.FINALIZE, {})
                self._finalized.wait(self.stub_timeout)
            except OSError:
                pass  # the stub is already gone; stop() reaps it
        stub.stop(5.0)
        self._fail_in_flight(unavailable(f"{self.label} was unloaded"))
        self._bls.shutdown(wait=False, cancel_futures=True)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes(pid: int) -> int | None:
    """A process's resident set size from /proc (None where that is not readable)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
