"""A plain response written past h11's costly send path, leaving h11's state as send() would.

Rules: h11 parses every request and owns the connection state; this module only writes, for the
plain case, the bytes that `send(Response)`, `send(Data)` and `send(EndOfMessage)` would write,
and moves h11's state machine through the same events. h11's send validates the headers twice
(its Response is rebuilt after the clean-up of framing headers) and re-scans them for framing
and keep-alive: a third of a small request's cost. The plain case, where none of that can change
anything:
- a 200 with Content-Length framing, answering a whole HTTP/1.1 keep-alive request that is not
  HEAD, with no protocol switch proposed;
- headers built by our own code (`trusted`: lower-case constants and numbers) with the body's
  Content-Length and nothing about the connection or other framing (no Connection or
  Transfer-Encoding).
Anything else returns None and the caller sends through h11. What it relies on in h11 (0.14 to
0.16): `Connection._cstate` (its `states`, `keep_alive`, `pending_switch_proposals` and
`process_event`) and `Connection._request_method`; checked at import, else always None.
"""
from __future__ import annotations

from collections.abc import Sequence

import h11

_REFUSED = frozenset((b"connection", b"transfer-encoding"))


def plain_head(conn: h11.Connection, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The head of a 200 response with `headers` (Content-Length among them), with h11's state
    moved to where sending it and its body through h11 would leave it (DONE); None, with nothing
    done, when the response is not of the plain kind. The caller writes the body after it."""
    if not AVAILABLE or conn.our_state is not h11.SEND_RESPONSE or conn.their_state is not h11.DONE:
        return None
    cstate = conn._cstate  # type: ignore[attr-defined]
    if (not cstate.keep_alive or cstate.pending_switch_proposals or conn.their_http_version != b"1.1"
            or conn._request_method == b"HEAD"):  # type: ignore[attr-defined]
        return None
    lines = [b"HTTP/1.1 200 OK\r\n"]
    for name, value in headers:
        if name in _REFUSED:
            return None
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    # as send(Response) and send(EndOfMessage) would: SEND_RESPONSE -> SEND_BODY -> DONE
    # (Data events change no state)
    cstate.process_event(h11.SERVER, h11.Response)
    cstate.process_event(h11.SERVER, h11.EndOfMessage)
    conn.client_is_waiting_for_100_continue = False
    conn._writer = None  # type: ignore[attr-defined]  # h11 has no writer for DONE
    return b"".join(lines)


def _probe() -> bool:
    """Whether this h11 has what plain_head relies on."""
    try:
        conn = h11.Connection(h11.SERVER)
        cstate = conn._cstate  # type: ignore[attr-defined]
        return (isinstance(cstate.states, dict) and isinstance(cstate.keep_alive, bool)
                and isinstance(cstate.pending_switch_proposals, set) and callable(cstate.process_event)
                and conn._request_method is None and hasattr(conn, "_writer"))  # type: ignore[attr-defined]
    except AttributeError:
        return False


AVAILABLE = _probe()
