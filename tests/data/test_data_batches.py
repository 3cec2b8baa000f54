"""The in-memory batch iterator: scaling, coverage, seeded repeatable shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab.data.batches import Batches, to_tensors


def test_to_tensors_scales_and_shapes() -> None:
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    x, y = to_tensors(images, np.array([7], np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 1.0, 0.2, 0.4]))
    assert y.dtype == torch.int64 and y.tolist() == [7]


@pytest.mark.parametrize("drop_last, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_cover_the_data(drop_last: bool, sizes: list[int]) -> None:
    x, y = torch.arange(10).float(), torch.arange(10)
    batches = Batches(x, y, 4, shuffle=True, seed=1, drop_last=drop_last)
    got = list(batches)
    assert [len(b[1]) for b in got] == sizes and len(batches) == len(sizes)
    seen = torch.cat([b[1] for b in got])
    assert len(set(seen.tolist())) == len(seen)  # no repeats within an epoch
    assert all(torch.equal(bx.long(), by) for bx, by in got)  # x and y stay paired
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(10))


def test_shuffle_is_seeded_and_changes_per_epoch() -> None:
    x, y = torch.arange(100).float(), torch.arange(100)
    a, b = Batches(x, y, 100, shuffle=True, seed=3), Batches(x, y, 100, shuffle=True, seed=3)
    first_a, first_b = next(iter(a))[1], next(iter(b))[1]
    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, next(iter(a))[1])  # a new permutation each epoch
    assert not torch.equal(first_a, torch.arange(100))
    state = a.get_state()
    expected = next(iter(a))[1]
    a.set_state(state)
    assert torch.equal(next(iter(a))[1], expected)
