"""triton_asyncio: a Triton-compatible inference server on one uvloop event loop."""

__version__ = "0.1.0"
# The Triton release whose protocol and behaviour we reproduce (reported by GET /v2).
TRITON_VERSION = "2.73.0"
