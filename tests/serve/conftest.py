"""Fixtures shared by the serving tests."""

from __future__ import annotations

import pytest

from app_helpers import png_bytes, render_mnist
from mnistlab.data import load_dataset


@pytest.fixture(scope="module")
def seven() -> bytes:
    """MNIST test digit 0 (a 7), drawn 10x larger as a PNG: what the lab's tests post."""
    images, labels = load_dataset("mnist", "test")
    assert labels[0] == 7
    return png_bytes(render_mnist(images[0], scale=10))
