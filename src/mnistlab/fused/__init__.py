"""Fused training steps: hand-written forward and backward for a model family, checked against
autograd, where PyTorch's eager autograd leaves speed on the table.

    from mnistlab.fused import CONVOLUTIONS, FusedCNN, supports
"""

from mnistlab.fused.blocks import CONVOLUTIONS
from mnistlab.fused.cnn import FusedCNN, supports

__all__ = ["CONVOLUTIONS", "FusedCNN", "supports"]
