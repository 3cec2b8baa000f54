"""`mnistlab serve --workers N`: several uvicorn processes answer, and bad counts are refused."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from app_helpers import trained_run  # noqa: F401
from mnistlab.perf.serve_bench import sample_png, server_process, workers_scaling
from mnistlab.serve.guard import HEADER_TIMEOUT

pytestmark = pytest.mark.timeout(180)


def test_two_workers_answer_every_request(trained_run):  # noqa: F811
    [r] = workers_scaling(trained_run, [2], requests=40, clients=4, body=sample_png())
    assert r["workers"] == 2 and r["requests"] == 40 and r["errors"] == 0
    assert r["requests_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"]


def test_zero_workers_is_a_user_error(trained_run):  # noqa: F811
    p = subprocess.run([sys.executable, "-m", "mnistlab", "serve", str(trained_run),
                        "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: --workers must be a whole number >= 1")
    assert len(p.stderr.strip().splitlines()) == 1


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server ends this connection (a 408 or a plain close), else None."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):       # a 408 answer, then the close
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_every_worker_closes_idle_and_slow_connections(trained_run):  # noqa: F811
    """The guard's deadlines hold in every worker process, not only in a one-process server,
    and a client with a whole request is answered while the others hang."""
    with server_process(str(trained_run), workers=2) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        idle = [socket.create_connection((host, port)) for _ in range(4)]  # spread over workers
        slow = socket.create_connection((host, port))
        slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n")
        try:
            answer = httpx.post(url + "/api/predict", content=sample_png(),
                                headers={"Content-Type": "image/png"}, timeout=30)
            assert answer.status_code == 200 and answer.json()["digit"] == 7
            for sock in [*idle, slow]:
                waited = _closed_within(sock, HEADER_TIMEOUT + 15)
                assert waited is not None, "a worker kept an idle connection open"
        finally:
            for sock in [*idle, slow]:
                sock.close()
