"""The Python-backend stub: one process per model instance, running the user's TritonPythonModel.

Rules: runnable as `python stub.py --sock-fd N --own-fd N --peer-fd N --arena-size N --parent-pid N`
with only numpy installed; it imports its siblings (ipc, arena, triton_python_backend_utils) as
top-level modules, never triton_asyncio. Threads: a reader thread owns the socket's receive side
and answers FREE, BLS_RESULT and CANCEL at once; the main thread runs INIT, EXECUTE, FINALIZE and
AUTO_COMPLETE in order, so user code never runs on the reader. The stub exits when the server
closes the channel or dies (PR_SET_PDEATHSIG, plus a parent-pid check for the race at start).
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.util
import inspect
import itertools
import json
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import arena as shm  # noqa: E402 - after the path set-up, on purpose
import ipc  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

# The helpers are the stub's, not the model's: free their module names and the path entry, so a
# model with its own arena.py, ipc.py or process.py imports its own (pb_utils stays importable:
# it is in sys.modules).
for _helper in ("arena", "ipc"):
    sys.modules[f"_triton_stub_{_helper}"] = sys.modules.pop(_helper)
sys.path.remove(os.path.dirname(os.path.abspath(__file__)))

_PR_SET_PDEATHSIG = 1
_STOP = object()


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl: the parent-pid check and the channel's EOF still end us
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _error_meta(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, pb_utils.TritonError):
        return exc.code(), exc.message()
    return pb_utils.TritonError.INTERNAL, str(exc)


class Runtime:
    """The stub's side of the channel; pb_utils calls into it (`pb_utils._runtime`)."""

    def __init__(self, channel: ipc.Channel, own: shm.Arena, peer: shm.Arena) -> None:
        self.channel = channel
        self.own = own  # the stub allocates outputs and BLS inputs here
        self.peer = peer  # the server's arena: inputs and BLS outputs, viewed in place
        self.frees = shm.PendingFrees()  # server blocks the stub no longer uses
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.calls: dict[int, queue.SimpleQueue] = {}
        self.call_ids = itertools.count(1)
        self.cancelled: set[int] = set()
        self.model: Any = None
        self.model_name = ""
        self.instance_name = ""
        self.decoupled = False
        self.collected: dict[int, pb_utils.InferenceResponse | None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- channel ------------------------------------------------------------------------------
    def send(self, cmd: ipc.Cmd, meta: Any) -> None:
        offsets = self.frees.drain()
        self.channel.send(cmd, meta, (ipc.Cmd.FREE, {"offsets": offsets}) if offsets else None)

    def read_forever(self) -> None:
        try:
            while (frame := self.channel.recv()) is not None:
                cmd, meta = frame
                if cmd is ipc.Cmd.FREE:
                    self.own.free(meta["offsets"])
                elif cmd is ipc.Cmd.BLS_RESULT:
                    waiter = self.calls.get(meta["call"])
                    if waiter is not None:
                        waiter.put(meta)
                elif cmd is ipc.Cmd.CANCEL:
                    self.cancelled.update(meta["requests"])
                else:
                    self.work.put(frame)
        except (OSError, ipc.ProtocolError):
            pass
        os._exit(0)  # the server is gone, or told us to go by closing the channel

    def serve(self) -> None:
        threading.Thread(target=self.read_forever, name="stub-reader", daemon=True).start()
        self.send(ipc.Cmd.READY, {"pid": os.getpid()})
        handlers = {ipc.Cmd.INIT: self.on_init, ipc.Cmd.EXECUTE: self.on_execute,
                    ipc.Cmd.FINALIZE: self.on_finalize, ipc.Cmd.AUTO_COMPLETE: self.on_auto_complete}
        while True:
            cmd, meta = self.work.get()
            handlers[cmd](meta)

    # -- commands -----------------------------------------------------------------------------
    def _import_model(self, path: str) -> Any:
        sys.path.insert(0, os.path.dirname(path))
        spec = importlib.util.spec_from_file_location("model", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["model"] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        if not hasattr(module, "TritonPythonModel"):
            raise AttributeError(f"'{path}' does not define class TritonPythonModel")
        return module.TritonPythonModel

    def _run(self, result: Any) -> Any:
        if inspect.isawaitable(result):
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            return self.loop.run_until_complete(result)
        return result

    def on_init(self, meta: dict) -> None:
        self.model_name, self.instance_name = meta["model_name"], meta["args"]["model_instance_name"]
        self.decoupled = meta["decoupled"]
        pb_utils._model_batches = meta["batching"]
        try:
            self.model = self._import_model(meta["model_path"])()
            if hasattr(self.model, "initialize"):
                self._run(self.model.initialize(meta["args"]))
        except Exception as exc:
            self.send(ipc.Cmd.INIT_DONE, {"error": f"{type(exc).__name__}: {exc}",
                                          "traceback": traceback.format_exc()})
            return
        self.send(ipc.Cmd.INIT_DONE, {"error": None})

    def on_auto_complete(self, meta: dict) -> None:
        try:
            cls = self._import_model(meta["model_path"])
            config = pb_utils.ModelConfig(meta["config"])
            if hasattr(cls, "auto_complete_config"):
                config = cls.auto_complete_config(config)
            if not isinstance(config, pb_utils.ModelConfig):
                raise TypeError("auto_complete_config must return the ModelConfig it was given")
            self.send(ipc.Cmd.AUTO_COMPLETE_DONE, {"config": json.dumps(config.as_dict()), "error": None})
        except Exception as exc:
            self.send(ipc.Cmd.AUTO_COMPLETE_DONE, {"config": None, "error": f"{type(exc).__name__}: {exc}",
                                                   "traceback": traceback.format_exc()})

    def on_finalize(self, meta: dict) -> None:
        error = None
        try:
            if self.model is not None and hasattr(self.model, "finalize"):
                self._run(self.model.finalize())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.send(ipc.Cmd.FINALIZE_DONE, {"error": error})

    def on_execute(self, meta: dict) -> None:
        reply = {"batch": meta["batch"], "responses": None, "error": None}
        requests: list = []
        responses: list | None = None
        try:
            requests = [self._request(r) for r in meta["requests"]]
            responses = self._check_result(requests, self._run(self.model.execute(requests)))
            if responses is not None:
                reply["responses"] = [self._encode(response, request.requested_output_names())
                                      for request, response in zip(requests, responses, strict=True)]
        except Exception as exc:
            reply["error"] = (f"Failed to process the request(s) for model instance '{self.instance_name}', "
                              f"message: {type(exc).__name__}: {exc}")
        for request in requests:
            self.collected.pop(request._handle, None)
        # Drop our views of the inputs first, so their FREE rides on this reply.
        del requests, responses
        self.send(ipc.Cmd.EXECUTE_DONE, reply)

    def _check_result(self, requests: list, result: Any) -> list | None:
        """Triton's checks of what execute returned, with its messages."""
        if self.decoupled:
            if result is not None:
                raise pb_utils.TritonModelException(f"Python model '{self.model_name}' is using the decoupled "
                                                    "mode and the execute function must return None.")
            return None
        if result is None and all(r._handle in self.collected for r in requests):
            return [self.collected[r._handle] for r in requests]  # answered through response senders
        if not isinstance(result, list):
            raise pb_utils.TritonModelException(
                f"Expected a list in the execute return, found type '{type(result)}'.")
        if len(result) != len(requests):
            raise pb_utils.TritonModelException(
                "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
                f"InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size is:{len(result)}\n")
        for response in result:
            if not isinstance(response, pb_utils.InferenceResponse):
                raise pb_utils.TritonModelException("Expected an 'InferenceResponse' object in the execute "
                                                    f"function return list, found type '{type(response)}'.")
        return result

    # -- tensors and messages -----------------------------------------------------------------
    def _request(self, meta: dict) -> pb_utils.InferenceRequest:
        inputs = [pb_utils.Tensor(d[0], shm.from_desc(self.peer, d, self.frees), _datatype=d[1])
                  for d in meta["inputs"]]
        request = pb_utils.InferenceRequest(
            request_id=meta["request_id"], correlation_id=meta["correlation_id"], inputs=inputs,
            requested_output_names=meta["outputs"], flags=meta["flags"], timeout=meta["timeout"],
            parameters=meta["parameters"], model_name=self.model_name)
        request._handle = meta["id"]
        return request

    def _encode(self, response: pb_utils.InferenceResponse | None, wanted: list[str] | None = None) -> dict | None:
        if response is None:
            return None
        if response.has_error():
            return {"outputs": [], "error": _error_meta(response.error()), "parameters": response._parameters}
        outputs = [shm.to_desc(self.own, t.name(), t._datatype, list(t.as_numpy().shape), t.as_numpy())
                   for t in response.output_tensors() if not wanted or t.name() in wanted]
        return {"outputs": outputs, "error": None, "parameters": response._parameters}

    def _decode(self, meta: dict | None) -> pb_utils.InferenceResponse | None:
        if meta is None:
            return None
        if meta["error"] is not None:
            code, message = meta["error"]
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
        tensors = [pb_utils.Tensor(d[0], shm.from_desc(self.peer, d, self.frees), _datatype=d[1])
                   for d in meta["outputs"]]
        return pb_utils.InferenceResponse(tensors, parameters=meta["parameters"])

    # -- pb_utils hooks -----------------------------------------------------------------------
    def send_response(self, handle: int, response: pb_utils.InferenceResponse | None, flags: int) -> None:
        final = bool(flags & pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if not self.decoupled:  # a non-decoupled model may answer through the sender, once
            if response is not None:
                self.collected[handle] = response
            elif final:
                self.collected.setdefault(handle, None)
            return
        self.send(ipc.Cmd.RESPONSE, {"request": handle, "response": self._encode(response), "final": final})
        if final:
            self.cancelled.discard(handle)

    def is_cancelled(self, handle: int) -> bool:
        return handle in self.cancelled

    def log(self, level: str, msg: str) -> None:
        self.send(ipc.Cmd.LOG, {"level": level, "msg": msg})

    def bls(self, request: pb_utils.InferenceRequest, decoupled: bool) -> Any:
        call = next(self.call_ids)
        waiter: queue.SimpleQueue = queue.SimpleQueue()
        self.calls[call] = waiter
        inputs = [shm.to_desc(self.own, t.name(), t._datatype, list(t.as_numpy().shape), t.as_numpy())
                  for t in request.inputs()]
        self.send(ipc.Cmd.BLS_CALL, {"call": call, "decoupled": decoupled, "request": {
            "model": request.model_name, "version": int(request.model_version), "id": request.request_id(),
            "inputs": inputs, "outputs": request.requested_output_names() or None, "flags": request.flags(),
            "correlation_id": request.correlation_id(), "parameters": request._parameters,
            "timeout": int(request.timeout())}})
        if not decoupled:
            try:
                return self._decode(waiter.get()["response"])
            finally:
                del self.calls[call]
        return self._stream(call, waiter)

    def _stream(self, call: int, waiter: queue.SimpleQueue) -> Iterator[pb_utils.InferenceResponse]:
        try:
            while True:
                meta = waiter.get()
                response = self._decode(meta["response"])
                if response is not None:
                    yield response
                if meta["final"]:
                    return
        finally:
            self.calls.pop(call, None)


class _Hooks:
    """What pb_utils sees as `_runtime`: the runtime's user-facing calls under pb_utils' names."""

    def __init__(self, runtime: Runtime) -> None:
        self.send = runtime.send_response
        self.bls = runtime.bls
        self.log = runtime.log
        self.is_cancelled = runtime.is_cancelled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Triton Python-backend stub (started by the server)")
    for flag in ("--sock-fd", "--own-fd", "--peer-fd", "--arena-size", "--parent-pid"):
        parser.add_argument(flag, type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop, not the terminal
    channel = ipc.Channel(socket.socket(fileno=args.sock_fd))
    own = shm.Arena(args.own_fd, args.arena_size, owner=True)
    peer = shm.Arena(args.peer_fd, args.arena_size, owner=False)
    os.close(args.own_fd)
    os.close(args.peer_fd)
    runtime = Runtime(channel, own, peer)
    pb_utils._runtime = _Hooks(runtime)
    runtime.serve()


if __name__ == "__main__":
    main()
