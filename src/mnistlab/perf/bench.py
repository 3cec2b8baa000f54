"""`mnistlab bench`: how fast the seed models train here, against Keras and against the machine.

    result = run_bench(epochs=5)     # {"rows": [...], "peak_gflops": {...}, ...}

In one process, on one machine:
  1. the matmul peak (fp32 and bf16, square 1024 and 2048 matrices): the machine's limit,
     fp32 the better of torch.mm (MKL on x86) and oneDNN's matmul (MATMUL_LIBRARIES);
  2. the seed presets (fc, cnn) trained by ``mnistlab.train.fit``: PyTorch autograd in fp32, and
     in bf16 autocast with channels_last; and the seed CNN through the fused step
     (``mnistlab.fused``, im2col and Winograd convolutions) in fp32 and in bf16, what
     ``mnistlab train cnn`` uses by default (in bf16 where the CPU has it natively, else fp32);
  3. when the reference environment (.bench-venv) exists, the same architectures and
     hyperparameters in Keras 3 on TensorFlow (``keras_reference.py`` beside
     this file, ``model.fit``, run by the Keras venv's own Python).
Each row: images per second, training seconds, test accuracy, and the share of the machine's
limit reached = images/s x training FLOPs per image / matmul peak of that precision. On a
machine shared with other jobs, wall-clock figures shrink with the load; each row and the peak
are therefore also measured in CPU seconds (``*_cpu`` keys), which the load barely changes.
Training FLOPs per image are counted by ``torch.utils.flop_counter`` over one forward and
backward pass (convolutions and matmuls; the seed CNN: about 72 MFLOP).

``device`` (``--device``): where mnistlab's rows train. On a GPU (or MPS) the CPU-only fused
row is left out and so is the share of the matmul peak: the peak measured is the CPU's, which
says nothing of a GPU (``share_of_peak`` is None, ``peak_gflops`` names the CPU). The Keras
reference always runs on the CPU (its venv is TensorFlow's CPU build).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mnistlab import console
from mnistlab.data import load_dataset
from mnistlab.machine import load_average, openmp_wait
from mnistlab.models import build_model
from mnistlab.perf.bench_progress import RowProgress
from mnistlab.perf.cpu import machine_facts
from mnistlab.threads import torch_threads
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_tensors
from mnistlab.train.device import NO_NATIVE_BF16, describe, native_bf16, resolve_device
from mnistlab.train.fit import fit
from mnistlab.train.precision import CANDIDATES, FUSED
from mnistlab.train.presets import preset_overrides

MODELS = ("fc", "cnn")
# (precision, engine) rows per model; the fused engines train only the cnn family, and
# winograd in bf16 is asked for only (no candidate of --engine auto there: not in the headline)
VARIANTS = {"fc": (("fp32", "autograd"), ("bf16", "autograd")),
            "cnn": (("fp32", "autograd"), ("fp32", "fused"), ("fp32", "winograd"),
                    ("bf16", "autograd"), ("bf16", "fused"), ("bf16", "winograd"))}
# a standalone script (it imports no mnistlab) run by the Keras venv's own Python
KERAS_SCRIPT = Path(__file__).with_name("keras_reference.py")
KERAS_VENV = ".bench-venv"


@dataclass
class BenchSize:
    epochs: int = 5            # the seed's 5 epochs
    limit: int = 0             # training images (0: all 60,000)
    test_limit: int = 0        # test images (0: all 10,000)
    matmul_sizes: tuple[int, ...] = (1024, 2048)   # sides of the square matrices timed
    matmul_seconds: float = 1.5                    # per size and precision


QUICK = BenchSize(epochs=1, limit=512, test_limit=256, matmul_sizes=(256,), matmul_seconds=0.05)


def _onednn_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b^T through oneDNN's matmul primitive (PyTorch's own linear kernel for it)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [None], "")


# How a matmul reaches the CPU's units. torch.mm sends float32 to the BLAS PyTorch was built
# with (MKL on x86: on AMD's Zen 5 it ran at 234 GFLOP/s where oneDNN reached 503) and bf16 to
# oneDNN; oneDNN is what TensorFlow's and PyTorch's convolutions use, so the machine's fp32
# limit is the better of the two.
MATMUL_LIBRARIES: dict[str, Any] = {"torch.mm": torch.mm, "onednn": _onednn_matmul}


def matmul_libraries(dtype: torch.dtype) -> list[str]:
    """The ways to time a ``dtype`` matmul here: torch.mm, and oneDNN's for float32 where
    PyTorch was built with it and it runs (for bf16 torch.mm already is oneDNN's)."""
    if dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return ["torch.mm"]
    try:
        _onednn_matmul(torch.ones(2, 2), torch.ones(2, 2))
    except (AttributeError, RuntimeError, NotImplementedError):   # a build without the op
        return ["torch.mm"]
    return ["torch.mm", "onednn"]


def matmul_peak_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0,
                       library: str = "torch.mm") -> dict[str, float]:
    """GFLOP/s of an (n x n) @ (n x n) matmul (2 n^3 FLOPs) in ``dtype`` through ``library``
    (MATMUL_LIBRARIES), two ways.

    ``wall``: the best wall time over ``seconds`` of repeats. ``cpu``: the best process CPU
    time, spread over the threads in use (idle OpenMP threads spin briefly or sleep, see
    ``mnistlab.machine.choose_openmp_wait``), which is what the machine would give without
    other jobs. Medium matrices (1024) make each
    repeat short, so some of them run undisturbed on a shared machine.
    """
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    matmul = MATMUL_LIBRARIES[library]
    matmul(a, b)                                             # warm-up: oneDNN picks its kernel
    threads = torch.get_num_threads()
    best_wall = best_cpu = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or best_wall == float("inf"):
        wall, cpu = time.perf_counter(), time.process_time()
        matmul(a, b)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    flops = 2 * n**3
    return {"wall": flops / best_wall / 1e9,
            "cpu": flops / max(best_cpu / threads, 1e-9) / 1e9}


def training_flops_per_image(model: torch.nn.Module, batch: int = 8) -> float:
    """FLOPs of one training step (forward + backward), per image, as counted by PyTorch."""
    x = torch.rand(batch, 1, 28, 28)
    y = torch.zeros(batch, dtype=torch.int64)
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / batch


def bench_mnistlab(model: str, precision: str, size: BenchSize, threads: int = 0,
                   engine: str = "autograd", device: str = "cpu") -> dict[str, Any]:
    """Train ``model`` with its seed preset at ``precision`` through ``engine`` on ``device``;
    one bench row."""
    overrides = preset_overrides("seed", model) | {
        "precision": precision, "engine": engine, "epochs": size.epochs, "limit": size.limit,
        "test_limit": size.test_limit, "threads": threads, "seed": 0,
        "eval_each_epoch": False, "eval_batch_size": 1000, "device": device}
    config = TrainConfig(model=model, preset="seed", **overrides)
    load_tensors(config)                                     # data loading is not training
    start, cpu = time.perf_counter(), time.process_time()
    # a bar on a terminal only: elsewhere the timed loop is exactly the one without it
    bar = [RowProgress(f"{model} {precision} {engine}")] if console.is_tty() else []
    result = fit(config, callbacks=bar)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    m = result.metrics
    layout = "nhwc" if engine in FUSED else (
        "channels_last" if precision == "bf16" and model == "cnn" else "nchw")
    return {"model": model, "precision": precision, "engine": engine, "layout": layout,
            "framework": "mnistlab", "epochs": m.epochs, "batch_size": config.batch_size,
            "images_per_second": m.images_per_second, "train_seconds": m.train_seconds,
            "epoch_seconds": [round(r.seconds or 0.0, 3) for r in result.history],
            "warmup_seconds": m.warmup_seconds,
            "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "test_accuracy": m.test_accuracy, "device": device,
            "parameters": m.parameters, "threads": m.threads}


def headline_row(rows: list[dict[str, Any]], auto_precision: str) -> dict[str, Any]:
    """The fastest seed-CNN row of what a run gets by default: an engine auto can choose for
    that row's precision and device (winograd in bf16 is asked for only), in the precision auto
    trains in here (any, where no such row ran)."""
    cnn = build_model("cnn")
    default = [r for r in rows if r["model"] == "cnn" and r["framework"] == "mnistlab"
               and r["engine"] in CANDIDATES
               and CANDIDATES[r["engine"]][0](cnn, r["precision"], r.get("device", "cpu"))]
    return max([r for r in default if r["precision"] == auto_precision] or default,
               key=lambda r: r["images_per_second"] or 0)


def keras_available(root: Path) -> bool:
    return (root / KERAS_VENV / "bin" / "python").exists() and KERAS_SCRIPT.exists()


def bench_keras(model: str, size: BenchSize, root: Path, data_file: Path, threads: int = 0
                ) -> dict[str, Any]:
    """The same model and hyperparameters in Keras/TensorFlow, in the reference venv."""
    cmd = [str(root / KERAS_VENV / "bin" / "python"), str(KERAS_SCRIPT),
           "--data", str(data_file), "--model", model, "--epochs", str(size.epochs),
           "--threads", str(threads)]
    returncode, lines, stderr = _run_keras(cmd, size.epochs, f"keras {model} fp32 model.fit")
    if returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": model, "precision": "fp32", "engine": "model.fit",
                "framework": "keras", "images_per_second": None, "test_accuracy": None,
                "error": tail}
    out = json.loads(lines[-1])
    return {"model": model, "precision": "fp32", "engine": "model.fit", "layout": "nhwc",
            "framework": "keras",
            "epochs": out["epochs"], "batch_size": out["batch_size"],
            "images_per_second": out["images_per_second"], "train_seconds": out["wall_seconds"],
            "wall_seconds": out["wall_seconds"], "cpu_seconds": out["cpu_seconds"],
            "epoch_seconds": out.get("epoch_seconds"),
            "test_accuracy": out["test_accuracy"], "parameters": out["parameters"],
            "threads": threads or os.cpu_count(), "device": "cpu",
            "versions": out["versions"]}


def _run_keras(cmd: list[str], epochs: int, name: str) -> tuple[int, list[str], str]:
    """Run the Keras reference: (its exit code, its JSON lines but the progress ones, its
    standard error), a bar (terminals only) moving at each {"epoch_done": k} it prints.
    Standard error goes to a file, not a pipe: TensorFlow writes plenty there, and a full
    pipe would stall the child while this reads its standard output."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as err, \
            console.progress(total=epochs, desc=name, unit="epoch") as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        lines = []
        with proc.stdout:
            for line in proc.stdout:
                if line.startswith('{"epoch_done"'):
                    bar.update(1)
                elif line.startswith("{"):
                    lines.append(line.strip())
        returncode = proc.wait()
        err.seek(0)
        return returncode, lines, err.read()


def _write_npz(path: Path, size: BenchSize) -> None:
    x_train, y_train = load_dataset("mnist", "train")
    x_test, y_test = load_dataset("mnist", "test")
    n, nt = size.limit or len(x_train), size.test_limit or len(x_test)
    np.savez(path, x_train=x_train[:n], y_train=y_train[:n], x_test=x_test[:nt],
             y_test=y_test[:nt])


def run_bench(size: BenchSize | None = None, *, keras: bool = True, threads: int = 0,
              root: Path | None = None, on_row: Any = None,
              device: str = "cpu") -> dict[str, Any]:
    """The whole comparison; ``on_row(row)`` is called as each row finishes. ``device``:
    where mnistlab's rows train (see the module docstring for what a GPU leaves out)."""
    size = size or BenchSize()
    root = root or _repository_root()
    resolved = resolve_device(device)           # a missing GPU: one line before any timing
    on_cpu = resolved.type == "cpu"
    # Where bf16 is emulated (no AVX-512 BF16 or AMX) its rows and its peak are left out: they
    # measure the emulation (a bf16 matmul at about 1 GFLOP/s on an AVX2 AMD EPYC), and the
    # seed CNN's five bf16 epochs would take hours. auto trains in fp32 there.
    bf16 = native_bf16(resolved.type)
    precisions = (("fp32", torch.float32), ("bf16", torch.bfloat16)) if bf16 or not on_cpu \
        else (("fp32", torch.float32),)
    with torch_threads(threads):
        # the best of a medium and a large matrix: large ones run nearer the limit on an idle
        # machine, medium ones more often escape preemption on a busy one
        peak: dict[str, dict[str, float]] = {}
        by_library: dict[str, dict[str, float]] = {}
        for p, dt in precisions:
            for lib in matmul_libraries(dt):
                tries = [matmul_peak_gflops(dt, n, size.matmul_seconds, lib)
                         for n in size.matmul_sizes]
                best = {k: max(t[k] for t in tries) for k in ("wall", "cpu")}
                by_library.setdefault(p, {})[lib] = round(best["wall"], 1)
                peak[p] = {k: max(best[k], peak.get(p, best)[k]) for k in ("wall", "cpu")}
    flops = {m: training_flops_per_image(build_model(m)) for m in MODELS}

    rows: list[dict[str, Any]] = []
    train_images = size.limit or 60000                   # a row's images per epoch

    def add(row: dict[str, Any]) -> None:
        # share of the limit = achieved FLOP/s / matmul peak, both measured the same way:
        # wall-clock (what this run saw) and CPU time (what an idle machine would give)
        ips = row.get("images_per_second")
        p = peak.get("bf16" if row["precision"] == "bf16" else "fp32", {})
        f = flops[row["model"]]
        row["train_mflop_per_image"] = round(f / 1e6, 3)
        # the CPU's peak is no limit for a row trained on a GPU
        share = ips and row.get("device", "cpu") == "cpu" and p
        row["share_of_peak"] = round(ips * f / (p["wall"] * 1e9), 4) if share else None
        row["share_of_peak_cpu"] = None
        row["steady_images_per_second"] = steady_images_per_second(row, train_images)
        if ips and row.get("cpu_seconds"):
            images = row["epochs"] * train_images
            row["images_per_cpu_second"] = round(images / row["cpu_seconds"], 1)
            if share:
                row["share_of_peak_cpu"] = round(
                    row["images_per_cpu_second"] * row["threads"] * f / (p["cpu"] * 1e9), 4)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    skipped: list[str] = []
    for model in MODELS:
        for precision, engine in VARIANTS[model]:
            if engine in FUSED and not on_cpu:
                continue                       # the fused steps are CPU-only
            if precision == "bf16" and on_cpu and not bf16:
                skipped.append(f"{model} bf16 {engine}")
                continue
            add(bench_mnistlab(model, precision, size, threads, engine, resolved.type))
    has_keras = keras and keras_available(root)
    if has_keras:
        with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
            data_file = Path(tmp) / "mnist.npz"
            _write_npz(data_file, size)
            for model in MODELS:
                add(bench_keras(model, size, root, data_file, threads))

    for row in rows:
        ref = _find(rows, row["model"], "keras") or {}
        row["ratio_vs_keras"] = _ratio(row.get("images_per_second"),
                                       ref.get("images_per_second"))
        row["ratio_vs_keras_cpu"] = _ratio(row.get("images_per_cpu_second"),
                                           ref.get("images_per_cpu_second"))
        row["steady_ratio_vs_keras"] = _ratio(row.get("steady_images_per_second"),
                                              ref.get("steady_images_per_second"))
    # with the bench's threads: the probe behind --engine auto is keyed by them
    with torch_threads(threads):
        facts = machine_facts()
    fastest = headline_row(rows, facts.auto.precision)
    keras_cnn = _find(rows, "cnn", "keras")
    return {
        "rows": rows,
        "cnn_speedup_vs_keras": _ratio(fastest["images_per_second"],
                                       keras_cnn and keras_cnn.get("images_per_second")),
        "cnn_speedup_vs_keras_cpu": fastest.get("ratio_vs_keras_cpu"),
        "cnn_speedup_vs_keras_steady": fastest.get("steady_ratio_vs_keras"),
        "cnn_fastest_precision": fastest["precision"],
        "cnn_fastest_engine": fastest["engine"],
        "keras": ("measured" if has_keras else "skipped: --no-keras" if not keras
                  else f"skipped: {KERAS_VENV} not found (make bench)"),
        "skipped": ({"rows": skipped, "why": f"{NO_NATIVE_BF16}: bf16 is emulated, far slower "
                     "than fp32"} if skipped else None),
        "peak_gflops": {k: round(v["wall"], 1) if v else None
                        for k, v in ({"bf16": {}} | peak).items()},
        "peak_gflops_cpu": {k: round(v["cpu"], 1) if v else None
                            for k, v in ({"bf16": {}} | peak).items()},
        "peak_gflops_by_library": by_library,      # the peak is the best of them
        "epochs": size.epochs, "train_images": train_images,
        "threads": threads or torch.get_num_threads(), "torch": torch.__version__,
        "device": describe(resolved), "peak_device": "cpu",
        "load_average": load_average(), "openmp_wait": openmp_wait(),
    } | facts.to_dict()                  # cpu_model, isa, auto_engine (+ reason, timings)


def _repository_root() -> Path:
    """The checkout holding .bench-venv: the current folder, else this package's."""
    here = Path(__file__).resolve().parents[3]          # src/mnistlab/perf/bench.py -> root
    return next((p for p in (Path.cwd(), here) if keras_available(p)), Path.cwd())


def steady_images_per_second(row: dict[str, Any], images: int) -> float | None:
    """Images a second over a row's epochs after the first (their median epoch), or None with
    fewer than two. A row's own figure charges Keras its first epoch, in which TensorFlow traces
    the graph (seconds), and mnistlab nothing for its warm-up, which it reports apart: after
    the first epoch neither has anything left to set up, so this ratio compares like with
    like."""
    later = [s for s in (row.get("epoch_seconds") or [])[1:] if s]
    return round(images / statistics.median(later), 1) if later else None


def _find(rows: list[dict[str, Any]], model: str, framework: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["model"] == model and r["framework"] == framework), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


if __name__ == "__main__":  # pragma: no cover - a convenience, the CLI is `mnistlab bench`
    json.dump(run_bench(QUICK), sys.stdout)
