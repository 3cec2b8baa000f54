"""Running the app on uvicorn: in the foreground (`mnistlab serve`) or in a background thread
(tests, the benchmark), always on an address the caller chose (127.0.0.1 by default).

Both run with the limits of :mod:`mnistlab.serve.guard`: deadlines on receiving a request,
uvicorn's keep-alive timeout, a cap on connections and on the size of a request head."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from mnistlab.errors import UserError
from mnistlab.serve.guard import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    LIMITS,
    guarded_protocol,
    tune_malloc,
)


def check_port(host: str, port: int) -> None:
    """UserError, not a traceback, if ``host:port`` cannot be listened on (taken, no such
    address, a port outside 1-65535)."""
    listen_socket(host, port).close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or UserError in one line. Serving on
    it (``serve_forever(..., sock=)``) leaves no moment for another program to take the port
    between the check and the start."""
    if not 0 <= port <= 65535:
        raise UserError(f"port {port} is not a TCP port; give --port a number from 1 to 65535")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        taken = isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES)
        fix = ("choose another port with --port or stop what is using it" if taken else
               "give --host an address of this machine (127.0.0.1: this machine only; "
               "0.0.0.0: every network it is on)")
        raise UserError(f"cannot listen on {host}:{port} ({reason}); {fix}") from None
    return sock


def _config(app: Any, host: str, port: int, *, header_timeout: float, body_timeout: float,
            **options: Any) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, access_log=False,
                          http=guarded_protocol(header_timeout, body_timeout),
                          **LIMITS, **options)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000, *,
                  sock: socket.socket | None = None, header_timeout: float = HEADER_TIMEOUT,
                  body_timeout: float = BODY_TIMEOUT) -> None:
    """Serve until Ctrl-C (on ``sock`` if given, from :func:`listen_socket`)."""
    if sock is None:
        sock = listen_socket(host, port)
    tune_malloc()
    config = _config(app, host, port, header_timeout=header_timeout,
                     body_timeout=body_timeout, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int = 0,
                   timeout: float = 20.0, *, header_timeout: float = HEADER_TIMEOUT,
                   body_timeout: float = BODY_TIMEOUT,
                   sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` in a daemon thread; yield its base URL (port 0: a free one); stop on exit.
    ``sock``: serve on this listening socket (:func:`listen_socket`), as `mnistlab serve`
    does, instead of one uvicorn makes."""
    config = _config(app, host, port, header_timeout=header_timeout, body_timeout=body_timeout,
                     log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mnistlab-uvicorn", daemon=True,
                              kwargs={"sockets": [sock]} if sock is not None else {})
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
