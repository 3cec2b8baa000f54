"""What keeps one hostile client from costing the server a socket or memory forever.

    protocol = guarded_protocol(header_timeout=10, body_timeout=30)
    uvicorn.Config(app, http=protocol, **LIMITS)

uvicorn closes a kept-alive connection idle ``timeout_keep_alive`` seconds after a response,
but has no deadline for *receiving* a request: a connection that never sends a byte, or
sends one header line every few seconds, or trickles its body, is held open forever (each
byte resets nothing, since nothing is armed). ASGI middleware cannot help: it runs only once
the headers are whole. So the deadline lives in the protocol, a small subclass of uvicorn's
h11 one:

- from the moment a connection opens (or a kept-alive one sends its next byte), its request
  headers must be complete within ``header_timeout`` seconds, or it gets ``408`` and is
  closed;
- once the headers are in, the body must be complete within ``body_timeout`` seconds, or the
  connection is closed (the app sees a disconnect, which it logs in one line);
- once a request is whole, no deadline runs: the app's work and the response are not timed.

Memory: glibc keeps freed heap memory for reuse, and raises its mmap threshold as big
buffers are freed, so a burst of large pictures left the server at several times its size.
:func:`tune_malloc` fixes the threshold (big buffers are mmapped and go back to the system
when freed) and :func:`release_memory` trims the heaps after a large picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0      # s: connect (or next request) -> headers complete
BODY_TIMEOUT = 30.0        # s: headers complete -> body complete (2 MiB at ~0.5 Mbit/s)
KEEP_ALIVE_TIMEOUT = 5     # s: idle kept-alive connection after a response (uvicorn's)
MAX_CONNECTIONS = 256      # uvicorn answers 503 beyond this many connections at once
MMAP_THRESHOLD = 1 << 20   # bytes: buffers from 1 MiB up are mmapped, and returned when freed

LIMITS: dict[str, Any] = {
    "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
    "limit_concurrency": MAX_CONNECTIONS,
    # h11's own cap on an incomplete request head (16 KiB): a header flood gets a 400.
    "h11_max_incomplete_event_size": 16 * 1024,
}

CLOSED_SLOW = "mnistlab.closed_slow"   # set in a request's scope when we cut its body short

log = logging.getLogger("uvicorn.error")

_408_BODY = b"the request headers did not arrive in time\n"
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(_408_BODY)) + _408_BODY


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Send each reply at once (TCP_NODELAY). asyncio sets it only on sockets made with
    IPPROTO_TCP, and uvicorn's listening sockets (and ours) are made with protocol 0: then
    Nagle's algorithm held a keep-alive connection's second and later replies for the
    client's delayed ACK, about 40 ms each (uvicorn issue #3149)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):   # the connection is gone already: nothing to do
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on receiving each request (module docstring)."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None      # "headers" or "body" while a deadline runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        no_delay(transport)
        super().connection_made(transport)
        self._arm("headers", self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow_state(self) -> None:
        """Arm, move or drop the deadline after h11 has seen new bytes."""
        if self.transport is None or self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests the keep-alive timer runs; the first byte of the next request
            # stops it (in uvicorn's data_received) and starts our header deadline.
            if self.timeout_keep_alive_task is None and self._phase != "headers":
                self._arm("headers", self.header_timeout)
            elif self.timeout_keep_alive_task is not None:
                self._disarm()
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.body_timeout)
        else:  # DONE, MUST_CLOSE, CLOSED, ERROR: the request is whole (or the connection over)
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline, self._phase = None, None
        if self.transport.is_closing():
            return
        who = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if phase == "headers":
            log.info("closed the connection of %s: no whole request headers within %g s",
                     who, seconds)
            if self.conn.our_state is h11.IDLE:  # no response of ours under way
                self.transport.write(_TIMEOUT_408)
        else:
            log.info("closed the connection of %s: its request body was not complete "
                     "within %g s", who, seconds)
            if self.cycle is not None:  # the app will see a disconnect: this line says it all
                self.cycle.scope[CLOSED_SLOW] = True  # type: ignore[literal-required]
        self.transport.close()


def guarded_protocol(header_timeout: float = HEADER_TIMEOUT,
                     body_timeout: float = BODY_TIMEOUT) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol class with these deadlines (uvicorn.Config(http=...) takes it)."""
    if header_timeout <= 0 or body_timeout <= 0:
        raise ValueError("timeouts must be positive")
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout)})


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None  # not glibc (musl, macOS): nothing to tune
    return libc


def tune_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold, so that large buffers (decoded pictures) are mmapped and
    given back to the system when freed. Returns False where this is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, ctypes.c_int(threshold)))


def release_memory() -> None:
    """Give the free memory at the top and in the holes of glibc's heaps back to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
