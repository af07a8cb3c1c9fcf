"""Triton's response cache (`--cache-config local,size=N`): a byte-bounded LRU of responses.

Rules: synchronous and I/O-free. The key hashes the model name, version and every input's name,
datatype, shape and bytes (not request parameters nor requested outputs: the codecs filter and
classify a cached response as they do a fresh one). Entries hold the outputs as immutable bytes,
so a hit shares them with no copy; the least recently used entries go first when bytes run out.
"""
from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.tensor import Tensor

# A cached output: (name, datatype, shape, raw bytes, parameters).
CachedOutput = tuple[str, str, tuple[int, ...], bytes, dict]

_LEN = struct.Struct("<Q")
# Bookkeeping charged per entry and per output on top of the tensor bytes, so that many empty
# responses cannot grow the cache without bound.
_ENTRY_OVERHEAD = 64
_OUTPUT_OVERHEAD = 64


def _update_str(h, s: str) -> None:
    b = s.encode()
    h.update(_LEN.pack(len(b)))
    h.update(b)


def request_key(model_name: str, model_version: int, request: InferenceRequest) -> bytes:
    """A 16-byte digest of everything that decides the response; inputs in name order."""
    h = hashlib.blake2b(digest_size=16)
    _update_str(h, model_name)
    h.update(_LEN.pack(model_version))
    inputs = request.inputs
    for name in sorted(inputs):
        tensor = inputs[name]
        _update_str(h, name)
        _update_str(h, tensor.datatype)
        h.update(_LEN.pack(len(tensor.shape)))
        h.update(struct.pack(f"<{len(tensor.shape)}q", *tensor.shape))
        raw = tensor.as_bytes()
        view = raw if isinstance(raw, memoryview) else memoryview(raw)
        h.update(_LEN.pack(view.nbytes))
        h.update(view)
    return h.digest()


class ResponseCache:
    """LRU by total bytes; `capacity` 0 caches nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._entries: OrderedDict[bytes, tuple[int, tuple[CachedOutput, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def lookup(self, key: bytes, model_name: str, model_version: str, request_id: str = "") -> InferenceResponse | None:
        """A fresh response (new Tensor objects over the cached bytes), or None on a miss."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        outputs = [Tensor(name, dt, list(shape), raw, parameters=dict(params))
                   for name, dt, shape, raw, params in entry[1]]
        return InferenceResponse(model_name, model_version, request_id, outputs)

    def insert(self, key: bytes, response: InferenceResponse) -> bool:
        """Store a successful response's outputs; False when it cannot fit at all."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return True
        outputs = tuple(_freeze(t) for t in response.outputs)
        size = _ENTRY_OVERHEAD + sum(_OUTPUT_OVERHEAD + len(o[3]) for o in outputs)
        if size > self.capacity:
            return False
        self._evict(self.capacity - size)
        self._entries[key] = (size, outputs)
        self.used += size
        return True

    def _evict(self, target: int) -> None:
        entries = self._entries
        while self.used > target and entries:
            _, (size, _) = entries.popitem(last=False)
            self.used -= size


def _freeze(tensor: Tensor) -> CachedOutput:
    raw = tensor.as_bytes()
    data = raw if isinstance(raw, bytes) else bytes(raw)
    return tensor.name, tensor.datatype, tuple(tensor.shape), data, dict(tensor.parameters)


def from_settings(settings: Iterable[tuple[str, str, str]]) -> ResponseCache | None:
    """The cache `--cache-config` describes (only the `local` implementation), or None."""
    settings = list(settings)
    size: int | None = None
    for cache, key, value in settings:
        if cache != "local":
            raise ValueError(f"Failed to initialize cache '{cache}': only the 'local' response cache "
                             f"is supported")
        if key == "size":
            try:
                size = int(value)
            except ValueError:
                raise ValueError(f"Failed to initialize cache 'local': invalid size '{value}'") from None
            if size < 0:
                raise ValueError(f"Failed to initialize cache 'local': invalid size '{value}'")
    if size is None:
        return None if not settings else ResponseCache(0)
    return ResponseCache(size)
