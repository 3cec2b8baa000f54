"""The published time-to-99% recipe, as typed into plain PyTorch: its shape and its training."""

from __future__ import annotations

import pytest
import torch

from mnistlab.perf.reference import ReferenceNet, run_reference, train_reference
from mnistlab.threads import torch_threads


def test_the_recipe_network_has_the_published_shape():
    model = ReferenceNet()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model.fc1.in_features == 800
    # conv 1->24 5x5, conv 24->32 3x3, linear 800->256, linear 256->10
    assert sum(p.numel() for p in model.parameters()) == (
        24 * 25 + 24 + 32 * 24 * 9 + 32 + 800 * 256 + 256 + 256 * 10 + 10)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_recipe_learns_and_repeats(precision):
    with torch_threads(1):          # small batches on a shared machine: one thread is fastest
        a = train_reference(0, precision, limit=3000, test_limit=1000)
        b = train_reference(0, precision, limit=3000, test_limit=1000)
    assert a.test_accuracy > 0.8                         # one epoch of 3,000 images
    assert a.test_accuracy == b.test_accuracy            # seeded: the same run twice
    assert a.train_seconds > 0


def test_summary_over_seeds():
    summary = run_reference(2, "fp32", threads=1, limit=1000, test_limit=500)
    assert [r.seed for r in summary.runs] == [0, 1]
    assert 0 < summary.mean_test_accuracy <= 1
    assert summary.to_dict()["precision"] == "fp32"
    with pytest.raises(ValueError):
        train_reference(0, "fp16", limit=10)
