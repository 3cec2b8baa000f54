"""Latency and throughput of using a model: in process, over HTTP, and in batches.

    bench_all(run_dir)        # everything `mnistlab bench-serve` prints, as a dict

Figures (milliseconds are per image or per request):

- ``in_process``: preprocess + forward of one canvas-sized PNG, p50 / p99;
- ``forward_only``: one 28x28 through PyTorch and through onnxruntime, p50 / p99;
- ``http_single``: one client, sequential POST /api/predict, p50 / p99;
- ``http_load``: ``requests`` POSTs from ``clients`` concurrent clients, p50 / p99, requests/s
  and the number of errors (anything but 200);
- ``workers_scaling`` (when several worker counts are given): ``http_load`` again against a
  server of each count (`mnistlab serve --workers N`), requests/s and p50 / p99 for each;
- ``batch``: images per second for PyTorch and onnxruntime over MNIST test images;
- ``roundtrip``: accuracy of predict on 200 test digits given as 28x28 arrays, as large
  dark-on-white PNGs and as phone-photo JPEGs (mnistlab.perf.synth).

The server runs as a separate process (`python -m mnistlab serve ...` on 127.0.0.1, a free
port), as a user would run it, so client threads do not share its interpreter. The HTTP client
(httpx) comes with the ``dev`` extra and is imported only when a figure needs it.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from mnistlab import extras, runs
from mnistlab.data import load_dataset
from mnistlab.data.batches import to_tensors
from mnistlab.errors import UserError
from mnistlab.inference.export import export_onnx
from mnistlab.inference.predict import OnnxPredictor, TorchPredictor, predict_image
from mnistlab.perf.synth import roundtrip_accuracy


def _httpx() -> ModuleType:
    return extras.require("httpx", "dev", "the HTTP figures of bench-serve")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": len(a)}


def _timed(fn: Callable[[], Any], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def sample_png(index: int = 0) -> bytes:
    """A 280x280 PNG like the web page sends: MNIST test digit ``index``, dark on white."""
    images, _ = load_dataset("mnist", "test")
    big = Image.fromarray(255 - images[index]).resize((280, 280), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float,
                 log: Callable[[], str]) -> None:
    """Poll ``url``/healthz until it answers 200; a UserError (with the end of ``log()``) if
    the server process exits first or does not answer within ``timeout`` seconds."""
    httpx = _httpx()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise UserError(f"the server did not start: {log().strip()[-300:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise UserError(f"the server did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def server_process(model: str, *, host: str = "127.0.0.1", workers: int = 1,
                   timeout: float | None = None) -> Iterator[str]:
    """`mnistlab serve MODEL [--workers N]` in a child process on a free port; yields its base
    URL once it answers (with several workers: once a worker does). ``timeout`` (default 60 s
    a worker: each imports PyTorch and loads the model, slowly on a busy machine)."""
    _httpx()                     # a missing httpx is one line before any server starts
    timeout = timeout if timeout is not None else 60.0 * workers
    port = _free_port()
    args = [sys.executable, "-m", "mnistlab", "serve", "--host", host, "--port", str(port),
            "--workers", str(workers)]
    args += ["--onnx", model] if model.endswith(".onnx") else [model]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{host}:{port}"
    try:
        wait_healthy(url, proc, timeout, lambda: proc.stderr.read().decode(errors="replace")
                     if proc.stderr else "")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_load(url: str, body: bytes, *, requests: int = 1000, clients: int = 8,
              timeout: float = 30.0) -> dict[str, Any]:
    """``requests`` POSTs of ``body`` (image/png) spread over ``clients`` threads, each with
    its own keep-alive connection. Returns latency percentiles, requests/s and errors."""
    httpx = _httpx()
    per_client = [requests // clients + (1 if i < requests % clients else 0)
                  for i in range(clients)]

    def client(count: int) -> tuple[list[float], int]:
        times, errors = [], 0
        with httpx.Client(base_url=url, timeout=timeout) as c:
            for _ in range(count):
                t = time.perf_counter()
                try:
                    r = c.post("/api/predict", content=body,
                               headers={"Content-Type": "image/png"})
                    ok = r.status_code == 200 and len(r.json()["probabilities"]) == 10
                except (httpx.HTTPError, ValueError, KeyError):
                    ok = False
                times.append((time.perf_counter() - t) * 1000)
                errors += not ok
        return times, errors

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, per_client))
    wall = time.perf_counter() - start
    times = [t for ts, _ in results for t in ts]
    return {**percentiles(times), "requests": len(times), "clients": clients,
            "errors": sum(e for _, e in results), "requests_per_s": len(times) / wall,
            "wall_s": wall}


def batch_throughput(logits: Callable[[np.ndarray], Any], x: np.ndarray,
                     batch_size: int = 256, repeats: int = 3) -> float:
    """Best-of-``repeats`` images per second of ``logits`` over ``x`` in batches."""
    logits(x[:batch_size])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(x), batch_size):
            logits(x[i:i + batch_size])
        best = max(best, len(x) / (time.perf_counter() - t))
    return best


def workers_scaling(run: str | os.PathLike[str], workers: list[int], *, requests: int = 1000,
                    clients: int = 8, body: bytes | None = None,
                    progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """``http_load`` against `mnistlab serve RUN --workers N` for each N in ``workers``, after
    a warm-up of ``4 * clients`` requests so that every worker has loaded its model."""
    body = body or sample_png()
    out = []
    for n in workers:
        with server_process(str(run), workers=n) as url:
            http_load(url, body, requests=4 * clients, clients=clients)   # warm-up
            progress(f"HTTP load, {n} worker(s): {requests} requests from {clients} clients")
            out.append({"workers": n, **http_load(url, body, requests=requests,
                                                  clients=clients)})
    return out


def bench_all(run: str | os.PathLike[str], *, requests: int = 1000, clients: int = 8,
              single: int = 200, batch_images: int = 10_000, threads: int | None = None,
              workers: list[int] | None = None,
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure of the module docstring for one run; the machine's load is recorded.

    ``threads`` (default: PyTorch's own default, one per core) is given to PyTorch and to
    onnxruntime alike, so that the two are compared on equal terms.
    """
    httpx = _httpx()
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    run_dir = runs.resolve_run(run)
    torch_pred = TorchPredictor(runs.load_model(run_dir), str(run_dir))
    body = sample_png()
    result: dict[str, Any] = {"run_dir": str(run_dir), "load_before": os.getloadavg()[0],
                              "cpu_count": os.cpu_count(), "threads": threads}

    progress("in-process latency (preprocess + forward)")
    result["in_process"] = percentiles(_timed(lambda: predict_image(torch_pred, body), single))

    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
        onnx_path = export_onnx(torch_pred.model, Path(tmp) / "model.onnx")
        onnx_pred = OnnxPredictor(onnx_path, threads=threads)
        x1 = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
        progress("forward-only latency, PyTorch and onnxruntime")
        result["forward_only"] = {
            "pytorch": percentiles(_timed(lambda: torch_pred.logits(x1), single * 5)),
            "onnxruntime": percentiles(_timed(lambda: onnx_pred.logits(x1), single * 5)),
        }
        images, _ = load_dataset("mnist", "test")
        x = to_tensors(images[:batch_images], np.zeros(len(images[:batch_images])))[0].numpy()
        progress("batch throughput, PyTorch and onnxruntime")
        result["batch"] = {
            "batch_size": 256, "images": len(x),
            "pytorch_img_per_s": batch_throughput(torch_pred.logits, x),
            "onnxruntime_img_per_s": batch_throughput(onnx_pred.logits, x),
        }

    progress("round trip: predict on 200 test digits as PNGs and phone-photo JPEGs")
    result["roundtrip"] = roundtrip_accuracy(torch_pred, 200)

    workers = workers or [1]
    with server_process(str(run_dir), workers=workers[0]) as url:
        with httpx.Client(base_url=url) as c:
            def one() -> None:
                r = c.post("/api/predict", content=body, headers={"Content-Type": "image/png"})
                r.raise_for_status()

            progress(f"HTTP latency, one client ({url})")
            result["http_single"] = percentiles(_timed(one, single))
        progress(f"HTTP load: {requests} requests from {clients} clients")
        result["http_load"] = http_load(url, body, requests=requests, clients=clients)
    result["workers"] = workers[0]
    if len(workers) > 1:
        result["workers_scaling"] = workers_scaling(run_dir, workers, requests=requests,
                                                    clients=clients, body=body,
                                                    progress=progress)
    result["load_after"] = os.getloadavg()[0]
    return result
