"""The shapes every model shares: 28x28 single-channel images in, ten class logits out.

No torch at import here: the report's numpy-only analysis imports these too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

IMAGE_SIZE = 28          # pixels per side: inputs are (B, 1, 28, 28)
NUM_CLASSES = 10         # digits 0-9 (or Fashion-MNIST's ten garments): logits are (B, 10)


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters alike: what config.json and metrics.json record."""
    return sum(p.numel() for p in model.parameters())
