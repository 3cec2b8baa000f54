"""Shared by the predict / export / serve / browser tests: a small trained run, and synthetic
pictures of digits (from mnistlab.perf.synth: MNIST digits rendered large, a phone-photo
look-alike).

The run is trained once per test session (cached here, since several test modules use it):
the seed's FC on 20,000 MNIST training images for 1 epoch (Adam, batch 128): about 94% test
accuracy in under a second.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from mnistlab.perf.synth import encode, phone_photo, render_mnist

TRAIN_IMAGES = 20_000


@functools.cache
def _train_run(root: str) -> Path:
    import torch

    from mnistlab import runs
    from mnistlab.data import load_dataset
    from mnistlab.data.batches import Batches, to_tensors
    from mnistlab.models import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is fastest, and the CPU is shared
    try:
        torch.manual_seed(0)
        images, labels = load_dataset("mnist", "train")
        x, y = to_tensors(images[:TRAIN_IMAGES], labels[:TRAIN_IMAGES])
        model = build_model("fc")
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for xb, yb in Batches(x, y, 128, shuffle=True, seed=0):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    tx, ty = to_tensors(*load_dataset("mnist", "test"))
    with torch.inference_mode():
        acc = float((model(tx).argmax(1) == ty).float().mean())
    run_dir = Path(root) / "fc-test"
    runs.save_run(run_dir, model=model, model_name="fc", model_config={},
                  config=runs.RunConfig(model="fc", extra={"epochs": 1,
                                                           "train_images": TRAIN_IMAGES}),
                  metrics=runs.RunMetrics(model="fc", test_accuracy=acc, dataset="mnist",
                                          train_images=TRAIN_IMAGES))
    return run_dir


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder (config.json, model.safetensors, metrics.json) of a small FC."""
    return _train_run(str(tmp_path_factory.getbasetemp() / "app-runs"))


# The synthetic pictures live in the library (the benchmark uses them too).
png_bytes = encode
__all__ = ["phone_photo", "png_bytes", "render_mnist", "trained_run"]
