"""A hostile load on a real `mnistlab serve`, and whether the server came through it.

    r = run_abuse("runs/fc-...", size="small")     # ~20 s: what the tests run
    r = run_abuse("runs/fc-...", size="full")      # `mnistlab serve-abuse --size full`
    r["ok"], r["goals"]                             # every goal met? which were not?

The server runs as a user runs it (`python -m mnistlab serve` in a child process on
127.0.0.1, a free port; its log goes to a file), and ``clients`` threads send, shuffled
together:

- ``good``: the canvas-sized digit PNG the web page sends (must all answer 200);
- ``bombs``: the 73 KB PNG that declares 24 megapixels (must be refused with a 4xx);
- ``big``: pictures at the limits that are still accepted (a 4096 x 2048 PNG, a progressive
  JPEG of 25 megapixels that is decoded reduced): the decoding work that is allowed;
- ``garbage``: random bytes, truncated and bit-flipped PNGs and JPEGs, a broken form, and on
  raw sockets non-HTTP bytes and an oversized header;

while, at the same time, on raw sockets:

- ``disconnects``: a request that declares a body, sends part of it and hangs up;
- ``idle``: connections that send nothing;
- ``slow_headers``: one header line every ``trickle_s`` seconds, for ever;
- ``slow_bodies``: whole headers, then a few body bytes every ``trickle_s`` seconds.

Measured: requests and their status codes, p50 / p99 latency (good requests, and all),
when each idle or slow connection was closed, and the server's memory from
/proc/PID/status: VmRSS before the load (after a warm-up), VmHWM (the peak) and VmRSS
``settle_s`` seconds after it. Goals (``goals``): no 5xx, no traceback or error in the
server's log, every good request answered 200 and every bomb refused, every idle or slow
connection closed within its deadline (plus slack), peak memory under 1 GB, and memory back
within 100 MB of the start.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import io
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mnistlab.errors import UserError
from mnistlab.perf.serve_bench import (
    _free_port,
    _httpx,
    percentiles,
    sample_png,
    wait_healthy,
)
from mnistlab.runs.environment import cpu_name

SIZES: dict[str, dict[str, Any]] = {
    "small": {"clients": 4, "good": 24, "bombs": 8, "big": 4, "garbage": 16, "disconnects": 4,
              "idle": 3, "slow_headers": 2, "slow_bodies": 2, "header_timeout": 1.5,
              "body_timeout": 3.0, "trickle_s": 0.5, "settle_s": 3.0},
    "full": {"clients": 16, "good": 2000, "bombs": 480, "big": 96, "garbage": 400,
             "disconnects": 64, "idle": 32, "slow_headers": 16, "slow_bodies": 16,
             "header_timeout": 10.0, "body_timeout": 30.0, "trickle_s": 5.0, "settle_s": 60.0},
}
PEAK_LIMIT_MB = 1024
SETTLE_LIMIT_MB = 100
LOG_PROBLEMS = ("Traceback", "Exception in ASGI", "ERROR")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (resident peak) of a process, in MB (MiB)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "hwm_mb": fields["VmHWM"]}


# --- the bodies -----------------------------------------------------------------------------

def _encode(img: Any, fmt: str, **save: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def _sheet(w: int, h: int, mode: str = "RGB") -> Any:
    """A white sheet w x h with one thick dark stroke: a (huge) picture of a 1."""
    img = Image.new(mode, (w, h), "white")
    ImageDraw.Draw(img).line([(w // 2, h // 5), (w // 2, 4 * h // 5)], fill="black",
                             width=max(3, h // 12))
    return img


def bomb_png() -> bytes:
    """The PNG of the issue: about 73 KB that decodes to 24 megapixels (6000 x 4000 RGB)."""
    return _encode(_sheet(6000, 4000), "PNG", optimize=True)


def big_bodies() -> list[tuple[str, bytes, str]]:
    """Pictures at the limits that are accepted, with their content type."""
    return [("big-png", _encode(_sheet(4096, 2048), "PNG", optimize=True), "image/png"),
            ("big-pjpeg", _encode(_sheet(5000, 5000), "JPEG", progressive=True, quality=40),
             "image/jpeg")]


def garbage_bodies(rng: random.Random, good: bytes) -> list[tuple[str, bytes, str]]:
    """Damaged and senseless bodies, each with the content type it claims."""
    jpeg = _encode(Image.open(io.BytesIO(good)).convert("RGB"), "JPEG", quality=80)
    out: list[tuple[str, bytes, str]] = [
        ("random", rng.randbytes(5000), "image/png"),
        ("random-jpeg", rng.randbytes(300), "image/jpeg"),
        ("png-signature-only", good[:8], "image/png"),
        ("truncated-png", good[: len(good) // 2], "image/png"),
        ("truncated-jpeg", jpeg[: len(jpeg) // 2], "image/jpeg"),
        ("text", b"hello, this is not a picture\n" * 20, "image/png"),
        ("broken-form", b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
         + good[:100], "multipart"),
    ]
    for i in range(6):  # bit flips past the signature: decoders meet damaged data
        for name, data, ctype in (("png", good, "image/png"), ("jpeg", jpeg, "image/jpeg")):
            b = bytearray(data)
            for _ in range(1 + i * 3):
                pos = rng.randrange(8, len(b))
                b[pos] ^= 1 << rng.randrange(8)
            out.append((f"flipped-{name}", bytes(b), ctype))
    return out


# --- the server -----------------------------------------------------------------------------

class Server:
    """`python -m mnistlab serve MODEL` on 127.0.0.1, its log in a file; stopped on exit."""

    def __init__(self, model: str, *, header_timeout: float | None,
                 body_timeout: float | None, log_dir: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / "server.log"
        args = [sys.executable, "-m", "mnistlab", "serve", "--host", "127.0.0.1",
                "--port", str(self.port)]
        if header_timeout is not None:  # None: the server's defaults (or an older server's)
            args += ["--header-timeout", str(header_timeout)]
        if body_timeout is not None:
            args += ["--body-timeout", str(body_timeout)]
        args += ["--onnx", model] if model.endswith(".onnx") else [model]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_healthy(self.url, self.proc, timeout, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- the clients ----------------------------------------------------------------------------

def _http_jobs(url: str, jobs: list[tuple[str, bytes, str]], timeout: float) -> list[dict]:
    """One client: each job (kind, body, content type) POSTed in turn on one connection."""
    httpx = _httpx()
    out = []
    with httpx.Client(base_url=url, timeout=timeout) as c:
        for kind, body, ctype in jobs:
            t = time.perf_counter()
            try:
                if ctype == "multipart":
                    r = c.post("/api/predict", content=body, headers={
                        "Content-Type": "multipart/form-data; boundary=xyz"})
                else:
                    r = c.post("/api/predict", content=body, headers={"Content-Type": ctype})
                status = r.status_code
                if status < 500 and not r.headers.get("content-type", "").startswith(
                        "application/json"):
                    status = -2          # an answer that is not the promised JSON
            except httpx.HTTPError:
                status = -1              # no answer at all
            out.append({"kind": kind, "status": status,
                        "ms": (time.perf_counter() - t) * 1000})
    return out


def _closed_by_server(sock: socket.socket, wait: float) -> tuple[bool, bytes]:
    """Wait up to ``wait`` s for the server to close ``sock``; (closed, what it sent)."""
    got = b""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def _raw_attack(kind: str, port: int, *, trickle_s: float, bound_s: float,
                body: bytes) -> dict[str, Any]:
    """One raw-socket attack; returns when the server closed it (or ``bound_s`` passed)."""
    start = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    closed, answer = False, b""
    try:
        if kind == "idle":
            closed, answer = _closed_by_server(sock, bound_s)
        elif kind in ("slow_headers", "slow_bodies"):
            if kind == "slow_headers":
                sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            else:
                sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
            i = 0
            while time.monotonic() - start < bound_s:
                closed, answer = _closed_by_server(sock, trickle_s)
                if closed:
                    break
                try:
                    sock.sendall(f"X-Slow-{i}: 1\r\n".encode() if kind == "slow_headers"
                                 else body[i * 16:(i + 1) * 16] or b"\0" * 16)
                except OSError:  # closed under us
                    closed = True
                    break
                i += 1
        elif kind in ("disconnect", "disconnect_form"):
            ctype = (b"image/png" if kind == "disconnect"
                     else b"multipart/form-data; boundary=xyz")
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         + ctype + b"\r\nContent-Length: 500000\r\n\r\n")
            sock.sendall(body[:3000] if kind == "disconnect"
                         else b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; "
                              b"filename=\"d.png\"\r\nContent-Type: image/png\r\n\r\n"
                              + body[:3000])
            time.sleep(0.2)
            closed = True   # we hang up: the server must take it calmly
        elif kind == "not_http":
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(300))
            closed, answer = _closed_by_server(sock, bound_s)
        elif kind == "huge_header":
            # A head that is never finished, past h11's 16 KiB cap: refused, not buffered.
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000)
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                sock.sendall(b"a" * 20_000)
            closed, answer = _closed_by_server(sock, bound_s)
    finally:
        sock.close()
    status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") and answer[9:12].isdigit() \
        else None
    return {"kind": kind, "closed": closed, "after_s": time.monotonic() - start,
            "status": status}


# --- the run --------------------------------------------------------------------------------

def run_abuse(model: str | os.PathLike[str], *, size: str = "small", seed: int = 0,
              progress: Any = lambda _: None, **overrides: Any) -> dict[str, Any]:
    """The load of the module docstring at ``size`` ("small" or "full", or any key of
    SIZES[size] overridden); returns every figure and ``goals`` / ``ok``."""
    if size not in SIZES:
        raise UserError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    p = {**SIZES[size], **overrides}
    rng = random.Random(seed)
    good = sample_png()
    bomb = bomb_png()
    big = big_bodies()
    garbage = garbage_bodies(rng, good)

    jobs: list[tuple[str, bytes, str]] = [("good", good, "image/png")] * p["good"]
    jobs += [("bomb", bomb, "image/png")] * p["bombs"]
    jobs += [big[i % len(big)] for i in range(p["big"])]
    jobs += [garbage[i % len(garbage)] for i in range(p["garbage"])]
    rng.shuffle(jobs)
    per_client = [jobs[i::p["clients"]] for i in range(p["clients"])]

    slack = max(3.0, 0.5 * p["header_timeout"])
    raw: list[tuple[str, float]] = (
        [("idle", p["header_timeout"] + slack)] * p["idle"]
        + [("slow_headers", p["header_timeout"] + p["trickle_s"] + slack)] * p["slow_headers"]
        + [("slow_bodies", p["header_timeout"] + p["body_timeout"] + p["trickle_s"] + slack)]
        * p["slow_bodies"]
        + [("disconnect", 5.0), ("disconnect_form", 5.0)] * (p["disconnects"] // 2)
        + [("not_http", 10.0), ("huge_header", 10.0)] * max(1, p["garbage"] // 40))

    result: dict[str, Any] = {"size": size, "params": p, "cpu": cpu_name(),
                              "cpu_count": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="mnistlab-abuse-") as tmp:
        server = Server(str(model), header_timeout=p.get("server_header_timeout",
                                                         p["header_timeout"]),
                        body_timeout=p.get("server_body_timeout", p["body_timeout"]),
                        log_dir=tmp)
        try:
            server.wait_ready()
            pid = server.proc.pid
            _http_jobs(server.url, [("warm-up", good, "image/png")] * 10, 30)
            before = memory_mb(pid)
            progress(f"server {server.url} (pid {pid}) at {before['rss_mb']:.0f} MB; "
                     f"{len(jobs)} requests from {p['clients']} clients and {len(raw)} raw "
                     "connections")
            samples: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.25):
                    samples.append(memory_mb(pid)["rss_mb"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(p["clients"] + len(raw)) as pool:
                raw_futures = [pool.submit(_raw_attack, kind, server.port,
                                           trickle_s=p["trickle_s"], bound_s=bound,
                                           body=good) for kind, bound in raw]
                http_futures = [pool.submit(_http_jobs, server.url, js, 120.0)
                                for js in per_client]
                answers = [a for f in http_futures for a in f.result()]
                raws = [f.result() for f in raw_futures]
            wall = time.perf_counter() - start
            stop.set()
            sampler.join()
            peak = memory_mb(pid)
            progress(f"load done in {wall:.1f} s; peak {peak['hwm_mb']:.0f} MB; waiting "
                     f"{p['settle_s']:.0f} s")
            time.sleep(p["settle_s"])
            after = memory_mb(pid)
            # Still serving, and right, after all that.
            final = _http_jobs(server.url, [("after", good, "image/png")] * 3, 30)
        finally:
            server.stop()
        log = server.log()
    result["load_after"] = os.getloadavg()[0]

    statuses = collections.Counter(a["status"] for a in answers)
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for a in answers:
        by_kind[a["kind"]][a["status"]] += 1
    raw_kinds: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(k for k, _ in raw):
        rs = [r for r in raws if r["kind"] == kind]
        raw_kinds[kind] = {"n": len(rs), "closed": sum(r["closed"] for r in rs),
                           "max_after_s": max(r["after_s"] for r in rs),
                           "statuses": dict(collections.Counter(str(r["status"]) for r in rs))}
    problems = [line for line in log.splitlines() if any(w in line for w in LOG_PROBLEMS)]
    result.update(
        requests=len(answers), wall_s=wall, requests_per_s=len(answers) / wall,
        statuses={str(k): v for k, v in sorted(statuses.items())},
        by_kind={k: {str(s): n for s, n in sorted(v.items())} for k, v in by_kind.items()},
        latency_good=percentiles([a["ms"] for a in answers if a["kind"] == "good"]),
        latency_all=percentiles([a["ms"] for a in answers]),
        raw=raw_kinds, raw_connections=len(raws),
        memory={"before_mb": before["rss_mb"], "peak_mb": peak["hwm_mb"],
                "sampled_peak_mb": max(samples, default=before["rss_mb"]),
                "after_mb": after["rss_mb"], "settle_s": p["settle_s"]},
        log_lines=len(log.splitlines()), log_problems=problems[:20],
        log_head=log.splitlines()[:40],
        log_disconnects=sum("disconnected before" in line for line in log.splitlines()),
        final_statuses=[a["status"] for a in final],
    )
    m = result["memory"]
    goals = {
        "no 5xx": not any(s >= 500 for s in statuses),
        "every request answered (JSON)": not any(s < 0 for s in statuses),
        "no traceback or error in the log": not problems,
        "good requests all 200": set(by_kind["good"]) == {200}
                                 and all(s == 200 for s in result["final_statuses"]),
        "bombs all refused with 413": set(by_kind["bomb"]) <= {413},
        "idle and slow connections closed in time":
            all(r["closed"] for r in raws if r["kind"] in ("idle", "slow_headers",
                                                            "slow_bodies")),
        f"peak memory under {PEAK_LIMIT_MB} MB": m["peak_mb"] < PEAK_LIMIT_MB,
        f"memory back within {SETTLE_LIMIT_MB} MB of the start":
            m["after_mb"] - m["before_mb"] < SETTLE_LIMIT_MB,
    }
    result["goals"] = goals
    result["ok"] = all(goals.values())
    return result




def summary_lines(r: dict[str, Any]) -> list[str]:
    """What `mnistlab serve-abuse` prints."""
    m, g, a = r["memory"], r["latency_good"], r["latency_all"]
    lines = [f"cpu: {r['cpu']} ({r['cpu_count']} CPUs), load average before/after "
             f"{r['load_before']:.2f} / {r['load_after']:.2f}; size {r['size']}",
             f"{r['requests']} requests in {r['wall_s']:.1f} s ({r['requests_per_s']:.0f}/s) "
             f"plus {r['raw_connections']} raw connections; status codes "
             + ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()),
             f"latency, good requests: p50 {g['p50_ms']:.1f} ms   p99 {g['p99_ms']:.1f} ms;  "
             f"all requests: p50 {a['p50_ms']:.1f} ms   p99 {a['p99_ms']:.1f} ms"]
    for kind, v in r["by_kind"].items():
        lines.append(f"  {kind:<20} " + ", ".join(f"{s}: {n}" for s, n in v.items()))
    for kind, v in r["raw"].items():
        lines.append(f"  raw {kind:<16} {v['closed']}/{v['n']} closed by the server, last "
                     f"after {v['max_after_s']:.1f} s; answers {v['statuses']}")
    lines.append(f"server memory: before {m['before_mb']:.0f} MB, peak {m['peak_mb']:.0f} MB, "
                 f"{m['settle_s']:.0f} s after {m['after_mb']:.0f} MB")
    lines.append(f"server log: {r['log_lines']} lines, {r['log_disconnects']} disconnects, "
                 f"{len(r['log_problems'])} tracebacks or errors")
    lines += [f"  log: {line}" for line in r["log_problems"][:5]]
    for goal, met in r["goals"].items():
        lines.append(f"{'ok  ' if met else 'FAIL'} {goal}")
    return lines


__all__ = ["SIZES", "memory_mb", "run_abuse", "summary_lines"]
