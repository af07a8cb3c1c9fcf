"""One stub process as the server sees it: spawn, handshake, the channel's reader thread, exit.

Rules: owns the process, the socketpair and both arenas of one stub generation, nothing about
requests (backend.py owns those). The state moves STARTING -> READY -> STOPPING/DEAD through
`_set_state` only. The reader thread is the only receiver on the channel; frames go to the
`on_frame` callback and the end of the stream (death, or our own close) to `on_exit`, once.
"""
from __future__ import annotations

import enum
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...errors import internal
from . import arena, ipc

log = logging.getLogger("triton_asyncio.backends.python")

STUB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stub.py")
# Every stub is spawned from this one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
# that forked the child exits, so a stub started from a short-lived restart thread would be killed.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="python-stub-spawner")
_LOG_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR, "VERBOSE": logging.DEBUG}


class StubState(enum.Enum):
    STARTING = "STARTING"
    READY = "READY"
    STOPPING = "STOPPING"
    DEAD = "DEAD"


_ALLOWED = {
    StubState.STARTING: (StubState.READY, StubState.STOPPING, StubState.DEAD),
    StubState.READY: (StubState.STOPPING, StubState.DEAD),
    StubState.STOPPING: (StubState.DEAD,),
    StubState.DEAD: (),
}


def forward_log(label: str, meta: dict) -> None:
    """A pb_utils.Logger line from the stub, into the server log."""
    log.log(_LOG_LEVELS.get(meta.get("level", "INFO"), logging.INFO), "%s: %s", label, meta.get("msg", ""))


class StubProcess:
    def __init__(self, interpreter: str, label: str, arena_size: int) -> None:
        self.label = label  # "model 'm' instance 'm_0_0'", for messages
        self.state = StubState.STARTING
        self._state_lock = threading.Lock()
        own_fd, own_path = arena.create_region(arena_size)
        peer_fd, peer_path = arena.create_region(arena_size)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                [interpreter, STUB_PATH, "--sock-fd", str(child_sock.fileno()), "--own-fd", str(peer_fd),
                 "--peer-fd", str(own_fd), "--arena-size", str(arena_size), "--parent-pid", str(os.getpid())],
                pass_fds=(child_sock.fileno(), own_fd, peer_fd), close_fds=True, stdin=subprocess.DEVNULL).result()
        except OSError as exc:
            parent_sock.close()
            raise internal(f"failed to start the stub process for {label} with '{interpreter}': {exc}") from None
        finally:
            child_sock.close()
        self.own = arena.Arena(own_fd, arena_size, owner=True)  # inputs and BLS results we send
        self.peer = arena.Arena(peer_fd, arena_size, owner=False)  # the stub's outputs, viewed in place
        self._unlink = [p for p in (own_path, peer_path) if p]
        os.close(own_fd)
        os.close(peer_fd)
        self.frees = arena.PendingFrees()  # stub blocks we no longer use
        self.channel = ipc.Channel(parent_sock)
        self.kill_reason: str | None = None  # why we killed it, when we did
        self._reader: threading.Thread | None = None

    # -- state --------------------------------------------------------------------------------
    def _set_state(self, new: StubState) -> bool:
        """False when the transition is not allowed (someone else got there first)."""
        with self._state_lock:
            if new not in _ALLOWED[self.state]:
                return False
            self.state = new
            return True

    # -- start-up (synchronous, before the reader runs) ---------------------------------------
    def handshake(self, cmd: ipc.Cmd | None, meta: Any, expect: ipc.Cmd, timeout: float) -> dict:
        """Send one command (or nothing) and read frames until `expect`; raises TritonError."""
        self.channel.sock.settimeout(timeout)
        try:
            if cmd is not None:
                self.send(cmd, meta)
            while True:
                frame = self.channel.recv()
                if frame is None:
                    raise internal(f"the stub process for {self.label} exited during start-up "
                                   f"({self.exit_description(5.0)})")
                got, body = frame
                if got is expect:
                    for path in self._unlink:  # the stub has mapped the regions by now
                        os.unlink(path)
                    self._unlink = []
                    return body
                self._on_startup_frame(got, body)
        except TimeoutError:
            self.kill()
            raise internal(f"the stub process for {self.label} did not answer {expect.name} "
                           f"within {timeout:g} s") from None
        except (OSError, ipc.ProtocolError) as exc:
            raise internal(f"the stub process for {self.label} failed during start-up: {exc}") from None
        finally:
            self.channel.sock.settimeout(None)

    def _on_startup_frame(self, cmd: ipc.Cmd, meta: Any) -> None:
        if cmd is ipc.Cmd.LOG:
            forward_log(self.label, meta)
        elif cmd is ipc.Cmd.FREE:
            self.own.free(meta["offsets"])
        else:
            raise ipc.ProtocolError(f"unexpected {cmd.name} during start-up")

    def start_reader(self, on_frame: Callable[[ipc.Cmd, Any], None],
                     on_exit: Callable[[StubProcess], None]) -> None:
        self._set_state(StubState.READY)
        self._reader = threading.Thread(target=self._read, args=(on_frame, on_exit),
                                        name=f"stub-reader-{self.proc.pid}", daemon=True)
        self._reader.start()

    def _read(self, on_frame: Callable[[ipc.Cmd, Any], None], on_exit: Callable[[StubProcess], None]) -> None:
        try:
            while (frame := self.channel.recv()) is not None:
                cmd, meta = frame
                if cmd is ipc.Cmd.FREE:
                    self.own.free(meta["offsets"])
                elif cmd is ipc.Cmd.LOG:
                    forward_log(self.label, meta)
                else:
                    on_frame(cmd, meta)
        except (OSError, ipc.ProtocolError) as exc:
            if self.state is not StubState.STOPPING:  # stop() closes the socket under us
                log.error("channel to the stub process for %s broke: %s", self.label, exc)
        except Exception:  # a bug in a handler must still end in on_exit, or requests would hang
            log.exception("error reading from the stub process for %s", self.label)
        self._set_state(StubState.DEAD)
        on_exit(self)

    # -- traffic ------------------------------------------------------------------------------
    def send(self, cmd: ipc.Cmd, meta: Any) -> None:
        """Send a frame, flushing our pending frees first; OSError when the stub is gone."""
        offsets = self.frees.drain()
        self.channel.send(cmd, meta, (ipc.Cmd.FREE, {"offsets": offsets}) if offsets else None)

    # -- exit ---------------------------------------------------------------------------------
    def kill(self, reason: str | None = None) -> None:
        if reason is not None and self.kill_reason is None:
            self.kill_reason = reason
        if self.proc.poll() is None:
            self.proc.kill()

    def exit_description(self, wait_s: float = 2.0) -> str:
        """'exit code N' or 'killed by signal SIGKILL', after reaping the process."""
        try:
            code = self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stop(self, timeout: float) -> None:
        """Close the channel (the stub exits on EOF), reap the process, release the arenas."""
        self._set_state(StubState.STOPPING)
        self.channel.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
        for path in self._unlink:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._unlink = []
