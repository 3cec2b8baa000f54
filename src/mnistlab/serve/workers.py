"""`mnistlab serve --workers N`: N uvicorn worker processes behind one listening socket.

uvicorn starts each worker from an import string, not from an app object, so the model to serve
and the PyTorch thread count travel to the workers in the environment; each worker builds its
own app (and loads its own copy of the model) with :func:`app_from_env`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import uvicorn

from mnistlab.inference.predict import load_predictor
from mnistlab.serve.app import create_app
from mnistlab.serve.guard import LIMITS, tune_malloc

GUARDED_PROTOCOL = "mnistlab.serve.guard:GuardedH11Protocol"

ENV_SOURCE = "MNISTLAB_SERVE_SOURCE"     # a run folder or an .onnx file
ENV_THREADS = "MNISTLAB_SERVE_THREADS"   # PyTorch threads per worker
ENV_DEVICE = "MNISTLAB_SERVE_DEVICE"     # --device: every worker loads its model there
ENV_ONNX = "MNISTLAB_SERVE_ONNX"         # "1": the source is an ONNX file (--onnx)


def app_from_env() -> Any:
    """The app a worker serves (uvicorn's factory)."""
    torch.set_num_threads(int(os.environ.get(ENV_THREADS, "1")))
    tune_malloc()      # as the one-process server does: freed picture buffers go back to the OS
    source = os.environ[ENV_SOURCE]
    if os.environ.get(ENV_ONNX) == "1":
        return create_app(load_predictor(onnx=source))
    return create_app(source, device=os.environ.get(ENV_DEVICE, "cpu"))


def serve_workers(source: str, host: str, port: int, workers: int, threads: int = 1,
                  device: str = "cpu", *, onnx: bool = False) -> None:
    """Serve ``source`` (a run, or with ``onnx`` an ONNX file) from ``workers`` processes
    until Ctrl-C, each with its own copy of the model on ``device`` (on one GPU the copies
    share it)."""
    os.environ[ENV_SOURCE] = str(source)
    os.environ[ENV_THREADS] = str(threads)
    os.environ[ENV_DEVICE] = device
    os.environ[ENV_ONNX] = "1" if onnx else "0"
    # uvicorn spawns its workers, and each rebuilds its protocol from the config: by import
    # string, the guard's protocol (serve.guard: deadlines on slow and idle requests, at their
    # default HEADER_TIMEOUT / BODY_TIMEOUT) reaches every worker. A class made by
    # guarded_protocol() with other deadlines could not be imported there.
    uvicorn.run("mnistlab.serve.workers:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="info", access_log=False, http=GUARDED_PROTOCOL,
                **LIMITS)
