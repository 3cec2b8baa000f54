"""Running the app on uvicorn: in the foreground (`mnistlab serve`) or in a background thread
(tests, the benchmark), always on an address the caller chose (127.0.0.1 by default)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from mnistlab.errors import UserError


def check_port(host: str, port: int) -> None:
    """UserError, not a traceback, if ``host:port`` cannot be listened on (taken, no such
    address)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                            "another port with --port or stop what is using it") from None


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until Ctrl-C."""
    check_port(host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@contextlib.contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int = 0,
                   timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` in a daemon thread; yield its base URL (port 0: a free one); stop on exit."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mnistlab-uvicorn", daemon=True)
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
