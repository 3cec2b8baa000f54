"""Shared by the lab's API and browser tests: a runs folder holding the small FC of
app_helpers, a small seed CNN (build_model("cnn"): 2 epochs of 1,000 MNIST images, a few
seconds), a run still training (config and history, no metrics yet), and a report folder with
a report.html; the environment points mnistlab's run roots at them.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app_helpers import trained_run  # noqa: F401

CNN_IMAGES = 1_000      # per epoch; about 80% test accuracy after 2 epochs
CNN_TEST_IMAGES = 500
CNN_EPOCHS = 2


@functools.cache
def _train_cnn(run_dir: str) -> Path:
    import torch

    from mnistlab import runs
    from mnistlab.data import load_dataset
    from mnistlab.data.batches import Batches, to_tensors
    from mnistlab.models import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        images, labels = load_dataset("mnist", "train")
        tx, ty = to_tensors(*(a[:CNN_TEST_IMAGES] for a in load_dataset("mnist", "test")))
        model = build_model("cnn")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        history = []
        for epoch in range(1, CNN_EPOCHS + 1):
            lo = (epoch - 1) * CNN_IMAGES
            x, y = to_tensors(images[lo:lo + CNN_IMAGES], labels[lo:lo + CNN_IMAGES])
            start, losses, correct = time.perf_counter(), [], 0
            model.train()
            for xb, yb in Batches(x, y, 32, shuffle=True, seed=epoch):
                opt.zero_grad()
                out = model(xb)
                loss = torch.nn.functional.cross_entropy(out, yb)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                correct += int((out.argmax(1) == yb).sum())
            seconds = time.perf_counter() - start
            model.eval()
            with torch.inference_mode():
                out = model(tx)
                test_loss = float(torch.nn.functional.cross_entropy(out, ty))
                test_acc = float((out.argmax(1) == ty).float().mean())
            history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses),
                            "train_accuracy": correct / len(x), "test_loss": test_loss,
                            "test_accuracy": test_acc, "seconds": round(seconds, 4)})
    finally:
        torch.set_num_threads(threads)
    return runs.save_run(
        Path(run_dir), model=model.eval(), model_name="cnn", model_config={},
        config=runs.RunConfig.from_dict(
            {"model": "cnn", "model_config": {}, "created": "2025-01-02T03:04:05Z",
             "train": {"epochs": CNN_EPOCHS, "preset": "seed", "dataset": "mnist"}}),
        history=[runs.HistoryRow.from_dict(r) for r in history],
        metrics=runs.RunMetrics.from_dict(
            {"model": "cnn", "preset": "seed", "dataset": "mnist", "epochs": CNN_EPOCHS,
             "test_accuracy": history[-1]["test_accuracy"],
             "train_seconds": round(sum(r["seconds"] for r in history), 3)}))


def start_training_run(run_dir: Path, epochs_done: int = 1, epochs: int = 5) -> Path:
    """A run folder as `mnistlab train` leaves it mid-run: config and history, no metrics."""
    from mnistlab import runs

    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_config(run_dir, runs.RunConfig.from_dict(
        {"model": "fc", "model_config": {}, "train": {"epochs": epochs, "dataset": "mnist"}}))
    add_epochs(run_dir, epochs_done)
    return run_dir


def add_epochs(run_dir: Path, epochs_done: int) -> None:
    from mnistlab import runs

    runs.write_history(run_dir, [runs.HistoryRow.from_dict(
        {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.8 + 0.02 * e,
         "test_loss": 1.1 / e, "test_accuracy": 0.79 + 0.02 * e, "seconds": 1.0})
        for e in range(1, epochs_done + 1)])


@pytest.fixture(scope="module")
def lab_roots(trained_run, tmp_path_factory) -> Iterator[Path]:  # noqa: F811
    """A runs folder (fc-test, cnn-test, live-fc: training) and a report folder, set as
    MNISTLAB_RUNS_DIR and MNISTLAB_REPORT_DIR for the module."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "runs"
    root.mkdir()
    shutil.copytree(trained_run, root / "fc-test")
    cnn = _train_cnn(str(tmp_path_factory.getbasetemp() / "lab-cnn" / "cnn-test"))
    shutil.copytree(cnn, root / "cnn-test")
    start_training_run(root / "live-fc")
    report = base / "report"
    (report / "figures").mkdir(parents=True)
    (report / "report.html").write_text("<!doctype html><title>report</title><h1>The report</h1>"
                                        "<img src='figures/a.png'>", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_RUNS_DIR", str(root))
        mp.setenv("MNISTLAB_REPORT_DIR", str(report))
        yield root
