"""ONNX export with a dynamic batch dimension, checked against PyTorch with onnxruntime.

    export_onnx(model, "model.onnx")              # torch.onnx's current (dynamo) exporter
    check_onnx(model, "model.onnx", x, y)        # max |logit difference|, both accuracies

The ONNX graph takes ``image`` (N, 1, 28, 28) float32 in [0, 1] and returns ``logits``
(N, 10), like the PyTorch model; N is free. onnx, onnxscript (torch.onnx's exporter needs
both) and onnxruntime come with the ``export`` extra and are imported only when used.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab import atomic, extras, runs
from mnistlab.data import load_dataset
from mnistlab.data.batches import to_tensors
from mnistlab.inference.predict import OnnxPredictor

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 18
PARITY_TOLERANCE = 1e-4          # max absolute difference of logits accepted
EXPORTER_NEEDS = ("onnx", "onnxscript")   # what torch.onnx's dynamo exporter imports


def require_export_extra(*modules: str) -> None:
    """Import the extra's ``modules`` now, so that a missing one is one UserError naming
    ``pip install 'mnistlab[export]'`` rather than a traceback from inside torch.onnx."""
    for module in modules:
        extras.require(module, "export", "ONNX export")


def export_onnx(model: Any, out: str | os.PathLike[str], *, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX (weights embedded, one file) atomically; returns the path."""
    require_export_extra(*EXPORTER_NEEDS)
    model = model.eval()
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # The exporter logs a warning per torchvision op it cannot register (torchvision is
    # deliberately absent) and warns about its own internals: neither concerns the user.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},), verbose=False, report=False,
        )
    out = Path(out)
    with atomic.atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)
    return out


def check_onnx(model: Any, onnx_path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray,
               *, batch_size: int = 256) -> dict[str, Any]:
    """Compare PyTorch and onnxruntime on the same inputs (N, 1, 28, 28) float32.

    Returns ``max_abs_diff`` (logits), ``torch_accuracy``, ``onnx_accuracy``, ``n``,
    ``agree`` (fraction of identical predicted digits) and ``ok`` (diff within tolerance and
    equal accuracy). Batches of ``batch_size`` also exercise the dynamic batch dimension.
    """
    require_export_extra("onnxruntime")
    session = OnnxPredictor(onnx_path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    torch_logits, onnx_logits = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            torch_logits.append(model.eval()(torch.from_numpy(xb)).float().numpy())
            onnx_logits.append(session.logits(xb))
    t, o = np.concatenate(torch_logits), np.concatenate(onnx_logits)
    y = np.asarray(y)
    max_abs_diff = float(np.abs(t - o).max())
    torch_acc = float((t.argmax(1) == y).mean())
    onnx_acc = float((o.argmax(1) == y).mean())
    return {"n": len(x), "max_abs_diff": max_abs_diff, "torch_accuracy": torch_acc,
            "onnx_accuracy": onnx_acc, "agree": float((t.argmax(1) == o.argmax(1)).mean()),
            "tolerance": PARITY_TOLERANCE,
            "ok": max_abs_diff <= PARITY_TOLERANCE and torch_acc == onnx_acc}


def export_run(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
               check_images: int = 1000) -> dict[str, Any]:
    """Export a run's model to ONNX (default ``<run>/model.onnx``) and check it on the first
    ``check_images`` MNIST test images. Returns check_onnx's figures plus ``onnx_path``."""
    run_dir = runs.resolve_run(run)
    model = runs.load_model(run_dir)
    path = export_onnx(model, out if out is not None else run_dir / "model.onnx")
    images, labels = load_dataset("mnist", "test")
    x, y = to_tensors(images[:check_images], labels[:check_images])
    result = check_onnx(model, path, x.numpy(), y.numpy())
    result.update(onnx_path=str(path), run_dir=str(run_dir),
                  onnx_bytes=path.stat().st_size)
    return result
