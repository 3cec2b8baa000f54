"""A hostile load on a real `mnistlab serve`, and whether the server came through it.

    r = run_abuse("runs/fc-...", size="small")     # ~20 s: what the tests run
    r = run_abuse("runs/fc-...", size="full")      # `mnistlab serve-abuse --size full`
    r = run_abuse("runs/fc-...", requests=5000, clients=16, workers=2)
    r["ok"], r["goals"]                             # every goal met? which were not?

The server runs as a user runs it (`python -m mnistlab serve [--workers N]` in a child
process on 127.0.0.1, a free port; its log goes to a file), and ``clients`` threads send
exactly ``requests`` requests (5,000 from 16 clients at the full size), shuffled together,
in the shares of ``MIX``:

- ``good`` (the rest, about half): MNIST test digits as the web page sends them (280 x 280
  PNG); must be answered 200, and the digit must be the label (at least 95% of them);
- ``bomb``: the 73 KB PNG that declares 24 megapixels (must be refused with a 413);
- ``big``: pictures at the limits that are still accepted (a 4096 x 2048 PNG, a progressive
  JPEG of 25 megapixels that is decoded reduced): the decoding work that is allowed;
- refused with a 4xx JSON answer: ``empty`` bodies, ``garbage`` (random bytes, text),
  ``truncated`` PNGs and JPEGs, ``oversize`` bodies past the 2 MiB cap, ``wrong-type``
  (text/plain, JSON, a GIF, no content type) and a ``broken-form``;
- ``damaged``: bit-flipped PNGs and JPEGs (a JPEG decoder may read these: 200 or 4xx);
- and on raw sockets non-HTTP bytes and an oversized header;

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
connection closed within its deadline (plus slack), good clients served while the slow
ones hung (p99 of those answers under the header deadline), peak memory under 1 GB, and
memory back within 50 MB of the start (summed over the workers).
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

from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.perf.serve_bench import _free_port, _httpx, percentiles, wait_healthy
from mnistlab.runs.environment import cpu_name
from mnistlab.serve.app import MAX_UPLOAD_BYTES

SIZES: dict[str, dict[str, Any]] = {
    "small": {"requests": 60, "clients": 4, "workers": 1, "disconnects": 4,
              "idle": 3, "slow_headers": 2, "slow_bodies": 2, "header_timeout": 1.5,
              "body_timeout": 3.0, "trickle_s": 0.5, "settle_s": 3.0},
    "full": {"requests": 5000, "clients": 16, "workers": 1,
             "disconnects": 64, "idle": 32, "slow_headers": 16, "slow_bodies": 16,
             "header_timeout": 10.0, "body_timeout": 30.0, "trickle_s": 5.0, "settle_s": 60.0},
}
# Shares of the requests: half good drawings, the rest every kind of bad or heavy body.
MIX = {"bomb": 0.10, "big": 0.02, "empty": 0.04, "garbage": 0.08, "truncated": 0.08,
       "oversize": 0.04, "wrong-type": 0.06, "broken-form": 0.02, "damaged": 0.06}
# Kinds that must be refused (a 4xx JSON answer); "big" and "damaged" (bit flips, which a
# JPEG decoder may well read) may be answered 200 as well, and never 5xx.
REFUSED = ("bomb", "empty", "garbage", "truncated", "oversize", "wrong-type", "broken-form")
GOOD_CORRECT_MIN = 0.95     # the drawings are MNIST test digits: a trained model reads these
PEAK_LIMIT_MB = 1024
SETTLE_LIMIT_MB = 50
LOG_PROBLEMS = ("Traceback", "Exception in ASGI", "ERROR")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the workers of `serve --workers N`)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (resident peak) of a process and its children, summed,
    in MB (MiB)."""
    fields = {"VmRSS": 0.0, "VmHWM": 0.0}
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] += int(value.split()[0]) / 1024
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


def good_drawings(count: int = 100) -> list[tuple[bytes, int]]:
    """MNIST test digits 0..count-1 as the web page sends them (280 x 280 PNG, dark on white),
    each with its label: the answer that counts as right."""
    images, labels = load_dataset("mnist", "test")
    out = []
    for img, label in zip(images[:count], labels[:count], strict=True):
        big = Image.fromarray(255 - img).resize((280, 280), Image.Resampling.BICUBIC)
        out.append((_encode(big, "PNG"), int(label)))
    return out


def bad_bodies(rng: random.Random, good: bytes) -> dict[str, list[tuple[bytes, str]]]:
    """Every kind of bad body, each with the content type it claims, by kind."""
    jpeg = _encode(Image.open(io.BytesIO(good)).convert("RGB"), "JPEG", quality=80)
    gif = _encode(Image.open(io.BytesIO(good)), "GIF")
    damaged = []
    for i in range(6):  # bit flips past the signature: decoders meet damaged data
        for data, ctype in ((good, "image/png"), (jpeg, "image/jpeg")):
            b = bytearray(data)
            for _ in range(1 + i * 3):
                pos = rng.randrange(8, len(b))
                b[pos] ^= 1 << rng.randrange(8)
            damaged.append((bytes(b), ctype))
    return {
        "empty": [(b"", "image/png"), (b"", "image/jpeg")],
        "garbage": [(rng.randbytes(5000), "image/png"), (rng.randbytes(300), "image/jpeg"),
                    (b"hello, this is not a picture\n" * 20, "image/png")],
        "truncated": [(good[:8], "image/png"), (good[: len(good) // 2], "image/png"),
                      (jpeg[: len(jpeg) // 2], "image/jpeg")],
        # Past the 2 MiB upload cap: refused while it is read, never buffered whole.
        "oversize": [(rng.randbytes(MAX_UPLOAD_BYTES + 4096), "image/png")],
        "wrong-type": [(good, "text/plain"), (b'{"digit": 7}', "application/json"),
                       (gif, "image/gif"), (good, "")],
        "broken-form": [(b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                         + good[:100], "multipart")],
        "damaged": damaged,
    }


# --- the server -----------------------------------------------------------------------------

class Server:
    """`python -m mnistlab serve MODEL` on 127.0.0.1, its log in a file; stopped on exit."""

    def __init__(self, model: str, *, header_timeout: float | None,
                 body_timeout: float | None, log_dir: str, workers: int = 1) -> None:
        self.workers = workers
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / "server.log"
        args = [sys.executable, "-m", "mnistlab", "serve", "--host", "127.0.0.1",
                "--port", str(self.port)]
        if header_timeout is not None:  # None: the server's defaults (or an older server's)
            args += ["--header-timeout", str(header_timeout)]
        if body_timeout is not None:
            args += ["--body-timeout", str(body_timeout)]
        if workers > 1:
            args += ["--workers", str(workers)]
        args += ["--onnx", model] if model.endswith(".onnx") else [model]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        timeout *= self.workers       # each worker imports PyTorch and loads the model
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

Job = tuple[str, bytes, str, int | None]   # kind, body, content type, the digit expected


def _http_jobs(url: str, jobs: list[Job], timeout: float) -> list[dict]:
    """One client: each job POSTed in turn on one connection (a new one if the server closed
    it); each answer's status (-1: none, -2: not JSON), whether the digit was right, its
    latency and when it came (time.monotonic())."""
    httpx = _httpx()
    out = []
    with httpx.Client(base_url=url, timeout=timeout) as c:
        for kind, body, ctype, expected in jobs:
            t = time.perf_counter()
            correct = None
            headers = ({"Content-Type": "multipart/form-data; boundary=xyz"}
                       if ctype == "multipart" else {"Content-Type": ctype} if ctype else {})
            try:
                r = c.post("/api/predict", content=body, headers=headers)
                status = r.status_code
                if status < 500 and not r.headers.get("content-type", "").startswith(
                        "application/json"):
                    status = -2          # an answer that is not the promised JSON
                elif expected is not None and status == 200:
                    correct = r.json().get("digit") == expected
            except httpx.HTTPError:
                status = -1              # no answer at all
            out.append({"kind": kind, "status": status, "correct": correct,
                        "ms": (time.perf_counter() - t) * 1000, "at": time.monotonic()})
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
            "status": status, "start": start, "end": time.monotonic()}


# --- the run --------------------------------------------------------------------------------

def run_abuse(model: str | os.PathLike[str], *, size: str = "small", seed: int = 0,
              progress: Any = lambda _: None, **overrides: Any) -> dict[str, Any]:
    """The load of the module docstring at ``size`` ("small" or "full", or any key of
    SIZES[size] overridden: ``requests``, ``clients``, ``workers``...); returns every figure
    and ``goals`` / ``ok``."""
    if size not in SIZES:
        raise UserError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    p = {**SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    rng = random.Random(seed)
    drawings = good_drawings()
    good = drawings[0][0]
    bad = bad_bodies(rng, good)
    heavy = {"bomb": [(bomb_png(), "image/png")],
             "big": [(body, ctype) for _, body, ctype in big_bodies()]}

    # Exactly p["requests"] jobs: each bad kind its share (at least one), the rest good.
    jobs: list[Job] = []
    for kind, share in MIX.items():
        bodies = heavy.get(kind) or bad[kind]
        jobs += [(kind, *bodies[i % len(bodies)], None)
                 for i in range(max(1, round(share * p["requests"])))]
    jobs += [("good", *drawings[i % len(drawings)][:1], "image/png",
              drawings[i % len(drawings)][1]) for i in range(p["requests"] - len(jobs))]
    rng.shuffle(jobs)
    per_client = [jobs[i::p["clients"]] for i in range(p["clients"])]

    slack = max(3.0, 0.5 * p["header_timeout"])
    raw: list[tuple[str, float]] = (
        [("idle", p["header_timeout"] + slack)] * p["idle"]
        + [("slow_headers", p["header_timeout"] + p["trickle_s"] + slack)] * p["slow_headers"]
        + [("slow_bodies", p["header_timeout"] + p["body_timeout"] + p["trickle_s"] + slack)]
        * p["slow_bodies"]
        + [("disconnect", 5.0), ("disconnect_form", 5.0)] * (p["disconnects"] // 2)
        + [("not_http", 10.0), ("huge_header", 10.0)] * max(1, p["requests"] // 400))

    result: dict[str, Any] = {"size": size, "params": p, "cpu": cpu_name(),
                              "cpu_count": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="mnistlab-abuse-") as tmp:
        server = Server(str(model), header_timeout=p.get("server_header_timeout",
                                                         p["header_timeout"]),
                        body_timeout=p.get("server_body_timeout", p["body_timeout"]),
                        log_dir=tmp, workers=p["workers"])
        try:
            server.wait_ready()
            pid = server.proc.pid
            _http_jobs(server.url, [("warm-up", good, "image/png", None)] * 10 * p["workers"], 30)
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
            final = _http_jobs(server.url, [("after", *drawings[1][:1], "image/png",
                                                drawings[1][1])] * 3, 30)
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
    # Served while slow or idle connections hung: the good answers that came while one was
    # still open. A server they could block would answer these only after the deadlines.
    hung = [(r["start"], r["end"]) for r in raws
            if r["kind"] in ("idle", "slow_headers", "slow_bodies")]
    during = [a["ms"] for a in answers if a["kind"] == "good"
              and any(s <= a["at"] <= e for s, e in hung)]
    goods = [a for a in answers if a["kind"] == "good"]
    refused = [a for a in answers if a["kind"] in REFUSED]
    problems = [line for line in log.splitlines() if any(w in line for w in LOG_PROBLEMS)]
    result.update(
        requests=len(answers), wall_s=wall, requests_per_s=len(answers) / wall,
        statuses={str(k): v for k, v in sorted(statuses.items())},
        by_kind={k: {str(s): n for s, n in sorted(v.items())} for k, v in by_kind.items()},
        latency_good=percentiles([a["ms"] for a in answers if a["kind"] == "good"]),
        latency_all=percentiles([a["ms"] for a in answers]),
        latency_good_while_hung=percentiles(during) if during else None,
        good_while_hung=len(during),
        good_correct=sum(bool(a["correct"]) for a in goods) / max(1, len(goods)),
        server_5xx=sum(n for s, n in statuses.items() if s >= 500),
        bad_not_4xx_json=sum(not 400 <= a["status"] < 500 for a in refused),
        workers=p["workers"],
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
        "every bad body a 4xx JSON answer": result["bad_not_4xx_json"] == 0,
        f"good drawings read right (at least {GOOD_CORRECT_MIN:.0%})":
            result["good_correct"] >= GOOD_CORRECT_MIN,
        # Good clients kept being served while the slow ones hung: some answers came then,
        # and even their p99 came sooner than the header deadline the slow ones ran into.
        "good clients served while slow connections hang":
            bool(during) and result["latency_good_while_hung"]["p99_ms"]
            < 1000 * p["header_timeout"],
        "idle and slow connections closed in time":
            all(r["closed"] for r in raws if r["kind"] in ("idle", "slow_headers",
                                                            "slow_bodies")),
        f"peak memory under {PEAK_LIMIT_MB} MB a worker":
            m["peak_mb"] < PEAK_LIMIT_MB * p["workers"],
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
             f"{r['requests']} requests from {r['params']['clients']} clients, "
             f"{r['workers']} server worker(s), in {r['wall_s']:.1f} s "
             f"({r['requests_per_s']:.0f}/s) "
             f"plus {r['raw_connections']} raw connections; status codes "
             + ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()),
             f"latency, good requests: p50 {g['p50_ms']:.1f} ms   p99 {g['p99_ms']:.1f} ms;  "
             f"all requests: p50 {a['p50_ms']:.1f} ms   p99 {a['p99_ms']:.1f} ms",
             f"good drawings read right: {r['good_correct']:.1%}; 5xx answers: "
             f"{r['server_5xx']}; bad bodies not a 4xx JSON: {r['bad_not_4xx_json']}"]
    if r["latency_good_while_hung"]:
        h = r["latency_good_while_hung"]
        lines.append(f"good requests while slow/idle connections hung: {r['good_while_hung']}"
                     f", p50 {h['p50_ms']:.1f} ms   p99 {h['p99_ms']:.1f} ms")
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


__all__ = ["MIX", "SIZES", "good_drawings", "memory_mb", "run_abuse", "summary_lines"]
