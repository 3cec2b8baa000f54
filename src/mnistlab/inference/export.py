"""ONNX export with a dynamic batch dimension, checked against PyTorch with onnxruntime.

    export_onnx(model, "model.onnx")              # torch.onnx's current (dynamo) exporter
    check_onnx(model, "model.onnx", x, y)        # max |logit difference|, both accuracies
    export_run("runs/cnn-...")                   # both, replacing RUN/model.onnx only if checked

The ONNX graph takes ``image`` (N, 1, 28, 28) float32 in [0, 1] and returns ``logits``
(N, 10), like the PyTorch model, then ``features`` (N, D): what the last layer read, so that
the exported run can say a picture is unlike the digits it learnt (``train.typicality``); N is
free. onnx, onnxscript (torch.onnx's exporter needs both) and onnxruntime come with the
``export`` extra and are imported only when used.

``export_run`` never loses a good file: it refuses to replace a file that is not an ONNX model
of mnistlab's (unless ``force``), and writes to a hidden partial file beside the target, checks
that, and only then renames it into place. A failed check, or a kill at any moment, leaves
the target as it was; partial files of processes that died are removed by the next export.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab import __version__, atomic, extras, runs
from mnistlab.data import load_dataset
from mnistlab.data.batches import to_tensors
from mnistlab.errors import UserError
from mnistlab.inference.predict import WEIGHTS_KEY, OnnxPredictor
from mnistlab.train.calibration import weights_fingerprint
from mnistlab.train.typicality import split_head

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"       # the second output, where the model ends in a Linear layer
OPSET = 18
PARITY_TOLERANCE = 1e-4          # max absolute difference of logits accepted
MARKER = "mnistlab_version"      # metadata key of the models we write
PARTIAL_SUFFIX = ".partial"      # .<name>.<pid>.partial: an export in progress (or killed)
EXPORTER_NEEDS = ("onnx", "onnxscript")   # what torch.onnx's dynamo exporter imports


def require_export_extra(*modules: str) -> None:
    """Import the extra's ``modules`` now, so that a missing one is one UserError naming
    ``pip install 'mnistlab[export]'`` rather than a traceback from inside torch.onnx."""
    for module in modules:
        extras.require(module, "export", "ONNX export")


class ParityError(UserError):
    """The exported model does not match PyTorch; ``result`` holds check_onnx's figures."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def export_onnx(model: Any, out: str | os.PathLike[str], *, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX (weights embedded, one file) atomically; returns the path."""
    program = _onnx_program(model, opset)
    out = Path(out)
    with atomic.atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)
    return out


class _LogitsAndFeatures(torch.nn.Module):
    """A model's logits and what its last layer read (``typicality.split_head``)."""

    def __init__(self, body: torch.nn.Module, head: torch.nn.Linear) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).flatten(1)
        return self.head(features), features


def _onnx_program(model: Any, opset: int = OPSET) -> Any:
    require_export_extra(*EXPORTER_NEEDS)
    model = model.eval()
    fingerprint = weights_fingerprint(model)       # of the model's own weights, before wrapping
    outputs = [OUTPUT_NAME]
    halves = split_head(model)
    if halves is not None:
        model, outputs = _LogitsAndFeatures(*halves).eval(), [OUTPUT_NAME, FEATURES_NAME]
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # The exporter logs a warning per torchvision op it cannot register (torchvision is
    # deliberately absent) and warns about its own internals: neither concerns the user.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=outputs,
            dynamic_shapes=({0: batch},), verbose=False, report=False,
        )
    program.model.metadata_props[MARKER] = __version__
    # which weights these are: a calibration copied beside the file from another run is told
    # apart (it flagged every digit of another model "unsure")
    program.model.metadata_props[WEIGHTS_KEY] = fingerprint
    return program


def is_mnistlab_onnx(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is an ONNX model as mnistlab writes them: marked by us, or (exports
    older than the mark) one input ``image`` of (N, 1, 28, 28) and one output ``logits``."""
    onnx = extras.require("onnx", "export", "ONNX export")
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # A ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08. This
            # turns away text and other files without reading them whole.
            if f.read(1) != b"\x08":
                return False
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a file, unreadable, not protobuf: in any case not ours
        return False
    if any(p.key == MARKER for p in proto.metadata_props):
        return True
    graph = proto.graph         # (exports older than the mark had no features output)
    if len(graph.input) != 1 or len(graph.output) != 1:
        return False
    (inp,), (out,) = graph.input, graph.output
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inp.type.tensor_type.shape.dim]
    return inp.name == INPUT_NAME and out.name == OUTPUT_NAME and dims[1:] == [1, 28, 28]


def check_onnx(model: Any, onnx_path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray,
               *, batch_size: int = 256) -> dict[str, Any]:
    """Compare PyTorch and onnxruntime on the same inputs (N, 1, 28, 28) float32.

    Returns ``max_abs_diff`` (logits), ``torch_accuracy``, ``onnx_accuracy``, ``n``,
    ``agree`` (fraction of identical predicted digits) and ``ok`` (diff within tolerance and
    equal accuracy). Batches of ``batch_size`` also exercise the dynamic batch dimension.
    """
    require_export_extra("onnxruntime")
    session = OnnxPredictor(onnx_path, calibrated=False)     # the logits alone are compared
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


def check_target(path: Path, *, force: bool = False) -> None:
    """UserError unless ``path`` may receive an export: absent, or an mnistlab ONNX model
    (a re-export), or anything but a folder with ``force``."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; give --out the path of the .onnx file to write")
    if path.exists() and not force and not is_mnistlab_onnx(path):
        raise UserError(f"{path} exists and is not an ONNX model written by mnistlab; it was "
                        "left as it is: choose another --out, or add --force to replace it")


def _partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def remove_dead_partials(target: Path) -> list[Path]:
    """Remove the partial files beside ``target`` left by exports that were killed (their
    process is gone); those of a live export are kept. Returns what was removed."""
    removed = []
    prefix = f".{target.name}."
    for p in target.parent.glob(f"{glob.escape(prefix)}*{PARTIAL_SUFFIX}"):
        pid = p.name[len(prefix):-len(PARTIAL_SUFFIX)]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _install(partial: Path, target: Path) -> None:
    """fsync ``partial``, rename it over ``target`` (atomic), fsync the folder."""
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)
    atomic._fsync_dir(target.parent)


def export_run(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
               check_images: int = 1000, force: bool = False) -> dict[str, Any]:
    """Export a run's model to ONNX (default ``<run>/model.onnx``) and check it on the first
    ``check_images`` MNIST test images. Returns check_onnx's figures plus ``onnx_path``.

    The target is replaced only by a model that passed the check (see the module docstring):
    otherwise ParityError (a UserError) with the figures, and the target is left as it was.
    A target that is not an mnistlab ONNX model is refused (UserError) unless ``force``.
    """
    run_dir = runs.resolve_run(run)
    target = Path(out) if out is not None else run_dir / "model.onnx"
    check_target(target, force=force)
    model = runs.load_model(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(target)
    partial = _partial_path(target)
    try:
        program = _onnx_program(model)
        program.save(str(partial), external_data=False)
        images, labels = load_dataset("mnist", "test")
        x, y = to_tensors(images[:check_images], labels[:check_images])
        result = check_onnx(model, partial, x.numpy(), y.numpy())
        result.update(onnx_path=str(target), run_dir=str(run_dir),
                      onnx_bytes=partial.stat().st_size)
        if not result["ok"]:
            kept = "was left as it was" if target.exists() else "was not written"
            raise ParityError(
                f"the ONNX export does not match PyTorch on {result['n']:,} test images (max "
                f"|logit diff| {result['max_abs_diff']:.2e}, limit {PARITY_TOLERANCE:.0e}; "
                f"accuracy {result['onnx_accuracy']:.2%} vs {result['torch_accuracy']:.2%}); "
                f"{target} {kept}", result)
        _install(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return result
