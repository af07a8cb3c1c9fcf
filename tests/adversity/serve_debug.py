"""Test-only launcher: `python -m tests.adversity.serve_debug <tritonserver flags>`.

Runs the server exactly as `python -m triton_asyncio` does, plus two hooks that need no change to
the product (no flag, no endpoint, no env var read by triton_asyncio itself):

* SIGUSR1 prints one line `ADVERSITY-PROBE <n> tasks=<len(asyncio.all_tasks())>` to stdout (the
  server log), so a test can see every task the server still holds after a scenario;
* ADVERSITY_REQUEST_TIMEOUT / ADVERSITY_HANDSHAKE_TIMEOUT (seconds) lower the HTTP read deadline
  and the gRPC handshake timeout, module constants, so the slow-client tests run in seconds.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys

from triton_asyncio import cli
from triton_asyncio.transport.grpc import protocol as grpc_protocol
from triton_asyncio.transport.http import protocol as http_protocol

PROBE = "ADVERSITY-PROBE"
_probes = itertools.count(1)


def _report() -> None:
    print(f"{PROBE} {next(_probes)} tasks={len(asyncio.all_tasks())}", flush=True)


def main() -> int:
    if timeout := os.environ.get("ADVERSITY_REQUEST_TIMEOUT"):
        http_protocol.REQUEST_TIMEOUT = float(timeout)
    if timeout := os.environ.get("ADVERSITY_HANDSHAKE_TIMEOUT"):
        grpc_protocol.HANDSHAKE_TIMEOUT = float(timeout)
    serve = cli.serve

    async def serve_with_probe(options):  # type: ignore[no-untyped-def]
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _report)
        return await serve(options)

    cli.serve = serve_with_probe  # main() looks serve up at call time
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
