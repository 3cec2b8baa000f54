"""The "robust" augmentation: seeded, in range, half the batch as affine, the rest harsher."""

from __future__ import annotations

import torch

from mnistlab.data import load_dataset
from mnistlab.data.augment import KINDS, ROBUST_SHARE, augment_batch
from mnistlab.data.batches import to_tensors


def _digits(n: int = 256) -> torch.Tensor:
    images, labels = load_dataset("mnist", "test")
    return to_tensors(images[:n], labels[:n])[0]


def test_robust_is_a_kind_seeded_and_in_range():
    assert "robust" in KINDS
    x = _digits()
    a = augment_batch(x, "robust", torch.Generator().manual_seed(3))
    b = augment_batch(x, "robust", torch.Generator().manual_seed(3))
    c = augment_batch(x, "robust", torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.isfinite(a).all()


def test_robust_distorts_more_than_affine_but_keeps_the_digit():
    x = _digits()
    g = torch.Generator().manual_seed(0)
    affine = (augment_batch(x, "affine", g) - x).abs().mean(dim=(1, 2, 3))
    robust = (augment_batch(x, "robust", g) - x).abs().mean(dim=(1, 2, 3))
    assert float(robust.mean()) > 1.2 * float(affine.mean())
    # about ROBUST_SHARE of the images get the harsh kind: only those have noise on the paper
    out = augment_batch(x, "robust", g)
    noisy = float((out[:, 0, :4, :4].flatten(1).amax(1) > 0).float().mean())
    assert abs(noisy - ROBUST_SHARE) < 0.12
    assert float(out.flatten(1).amax(1).min()) > 0.3      # no digit erased outright
