"""Entry point: flags -> ServerOptions -> repository, server, listeners; signals and drain.

Rules: the only module that knows every layer; it wires them and owns process life cycle
(uvloop installed here, startup tables, graceful shutdown within --exit-timeout-secs).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from . import TRITON_VERSION
from .errors import TritonError
from .memory import device
from .memory.shm_registry import ShmRegistry
from .metrics.latency import MetricsSettings
from .repository.loader import LoadSettings
from .repository.manager import RepositoryManager
from .server import response_cache
from .server.cli_args import UsageError, parse_args, unsupported_flags
from .server.inference_server import InferenceServer, ServerState
from .server.options import ServerOptions
from .server.startup_log import (
    configure_logging,
    grpc_started,
    http_started,
    log_table,
    metrics_started,
    model_table,
    options_table,
    server_option_rows,
)
from .server.trace import TraceManager
from .transport.grpc.protocol import GrpcProtocol, GrpcServerState
from .transport.grpc.service import GrpcService
from .transport.http.app import HttpApp
from .transport.http.protocol import HttpProtocol
from .transport.http.protocol import ServerState as ConnectionState
from .transport.metrics_http import MetricsService

log = logging.getLogger("triton_asyncio")

# --grpc-infer-response-compression-level: grpc-core turns a level into an algorithm the client
# accepts; we answer every level but none with gzip (sent only to clients that accept it)
_GRPC_COMPRESSION = {"none": None, "low": "gzip", "medium": "gzip", "high": "gzip"}
_BACKGROUND: set[asyncio.Task] = set()  # periodic tasks (metrics sampling), cancelled at shutdown


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    configure_logging(options)
    for flag in unsupported_flags(options):
        log.warning("option '--%s' is not supported by triton_asyncio yet; ignored", flag)
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(options))
    finally:
        loop.close()


def build_server(options: ServerOptions) -> tuple[InferenceServer, dict[str, list[str]]]:
    """Scan the repositories and load the startup models (synchronously, as tritonserver does)."""
    # pool sizes for the GPU paths (cheap: nothing CUDA is imported until a GPU is used)
    device.configure(options.pinned_memory_pool_byte_size, dict(options.cuda_memory_pool_byte_size))
    settings = LoadSettings(options.model_config_name, auto_complete=not options.strict_model_config)
    manager = RepositoryManager(list(options.model_repositories), settings)
    manager.scan()
    if options.model_control_mode == "explicit":
        names = sorted(manager.models) if "*" in options.load_models else list(options.load_models)
        errors = {n: e for n in names if (e := manager.load(n))}
    else:
        errors = manager.load_all()
    server = InferenceServer(manager, server_id=options.id, strict_readiness=options.strict_readiness,
                             response_cache=response_cache.from_settings(options.cache_config),
                             shm=ShmRegistry(enabled=options.allow_client_shm),
                             model_control_mode=options.model_control_mode,
                             tracer=TraceManager(level=options.trace_level, rate=options.trace_rate,
                                                 count=options.trace_count, file=options.trace_file,
                                                 log_frequency=options.trace_log_frequency,
                                                 mode=options.trace_mode, config=options.trace_config))
    return server, errors


def _model_rows(server: InferenceServer) -> list[tuple[str, str, str]]:
    rows = []
    for name, version, state, reason in server.repository_index(False):
        if version is None:
            if state is not None:
                rows.append((name, "-", f"UNAVAILABLE: {reason}"))
            continue
        rows.append((name, version, state if state == "READY" else f"{state}: {reason}"))
    return rows


async def serve(options: ServerOptions) -> int:
    try:
        server, errors = build_server(options)
    except Exception as e:
        log.error("error: creating server: %s", e)
        return 1
    log_table(model_table(_model_rows(server)))
    log_table(options_table(server_option_rows(options, TRITON_VERSION, list(server.extensions))))
    if errors and options.exit_on_error:
        log.error("error: creating server: Internal - failed to load all models")
        await server.stop()
        return 1
    server.bind_loop(asyncio.get_running_loop())
    server.state = ServerState.READY
    listeners = await _start_listeners(options, server)
    stop, hurry = asyncio.Event(), asyncio.Event()
    _install_signals(stop, hurry)
    poller = None
    if options.model_control_mode == "poll" and options.repository_poll_secs > 0:
        poller = asyncio.create_task(_poll_repository(server.manager, options.repository_poll_secs, stop))
    await stop.wait()
    await _exit_grace(server, options.exit_grace_secs, hurry)
    if poller is not None:
        await poller  # a poll under way finishes (not cancelled: a half-swapped model would leak)
    return await _shutdown(options, server, listeners)


async def _exit_grace(server: InferenceServer, seconds: int, hurry: asyncio.Event) -> None:
    """--exit-grace-secs: keep serving while readiness says no, so orchestrators route elsewhere
    before the listeners close; a second signal ends the grace at once."""
    if seconds <= 0:
        return
    server.exit_grace = True
    log.info("Exit grace: not ready, serving for %d more seconds", seconds)
    try:
        await asyncio.wait_for(hurry.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def _poll_repository(manager: RepositoryManager, period_s: int, stop: asyncio.Event) -> None:
    """Poll mode's main loop (tritonserver polls on its main thread): sleep, rescan, until stopped."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), period_s)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await manager.poll()
        except TritonError as e:  # an unreachable bucket, say: readable again at a later poll
            log.error("failed to poll the model repository: %s", e.message)
        except Exception:  # a repository that cannot be read now may be readable at the next poll
            log.exception("failed to poll the model repository")


async def _start_listeners(options: ServerOptions, server: InferenceServer) -> list:
    loop = asyncio.get_running_loop()
    listeners = []
    if options.allow_grpc:
        gstate = GrpcServerState()
        service = GrpcService(server, header_forward_pattern=options.grpc_header_forward_pattern,
                              restricted=options.grpc_restricted_protocols)
        compression = _GRPC_COMPRESSION[options.grpc_infer_response_compression_level]
        srv = await loop.create_server(
            lambda: GrpcProtocol(service, server_state=gstate, compression=compression,
                                 keepalive_time_ms=options.grpc_keepalive_time_ms,
                                 keepalive_timeout_ms=options.grpc_keepalive_timeout_ms,
                                 min_recv_ping_interval_ms=options.grpc_http2_min_recv_ping_interval_without_data_ms,
                                 max_ping_strikes=options.grpc_http2_max_ping_strikes,
                                 permit_pings_without_calls=options.grpc_keepalive_permit_without_calls),
            options.grpc_address, options.grpc_port, backlog=1024, reuse_address=True,
            reuse_port=options.reuse_grpc_port or None)
        listeners.append(("GRPC", srv, gstate))
        log.info(grpc_started(options.grpc_address, options.grpc_port))
    if options.allow_http:
        app = HttpApp(server, max_input_size=options.http_max_input_size,
                      restricted=options.http_restricted_apis)
        state = ConnectionState()
        srv = await loop.create_server(
            lambda: HttpProtocol(app, max_input_size=options.http_max_input_size, server_state=state),
            options.http_address, options.http_port, backlog=1024, reuse_address=True)
        listeners.append(("HTTP", srv, state))
        log.info(http_started(options.http_address, options.http_port))
    if options.allow_metrics:
        mstate = ConnectionState()
        metrics = MetricsService(server, settings=MetricsSettings.from_pairs(options.metrics_config),
                                 cpu=options.allow_cpu_metrics, gpu=options.allow_gpu_metrics,
                                 interval_ms=options.metrics_interval_ms)
        sampler = loop.create_task(metrics.run(), name="metrics-sampler")
        mapp = metrics.app()
        srv = await loop.create_server(lambda: HttpProtocol(mapp, server_state=mstate),
                                       options.metrics_address, options.metrics_port, reuse_address=True)
        listeners.append(("Metrics", srv, mstate))
        _BACKGROUND.add(sampler)  # the loop keeps only weak references to tasks
        log.info(metrics_started(options.metrics_address, options.metrics_port))
    return listeners


def _install_signals(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            print(f"Signal ({signum}) received.", flush=True)
            stop.set()
        else:
            hurry.set()  # only ends an exit grace early; the drain is not cut short

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


async def _shutdown(options: ServerOptions, server: InferenceServer, listeners: list) -> int:
    deadline = time.monotonic() + options.exit_timeout_secs
    for task in _BACKGROUND:
        task.cancel()
    _BACKGROUND.clear()
    for _, srv, _ in listeners:
        srv.close()
    for _, _, state in listeners:
        state.close_idle()
    for _, _, state in listeners:
        await state.drain(max(0.0, deadline - time.monotonic()))
    log.info("Waiting for in-flight requests to complete.")
    try:
        await asyncio.wait_for(server.stop(), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        log.error("failed to stop server: Internal - Exit timeout expired. Exiting immediately.")
        return 1
    return 0
