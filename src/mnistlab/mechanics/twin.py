"""A torch twin of the NumPy FC network: same init, same batches, autograd and torch.optim.SGD.

``mnistlab scratch --twin`` steps it beside the NumPy net. The two track each other to float32
rounding through a whole training, so any accuracy the NumPy net reaches for a seed is what
PyTorch reaches for that seed too: differences between seeds are the seed's draw of initial
weights and batch order, not the hand-written backward pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.mechanics.bridge import load_into_torch, params_from_torch
from mnistlab.mechanics.numpy_net import Params
from mnistlab.models import build_model


class TorchTwin:
    def __init__(self, params: Params, x: np.ndarray, labels: np.ndarray, lr: float) -> None:
        self.model = build_model("fc", hidden=params["W1"].shape[1])
        load_into_torch(params, self.model)
        self.x = torch.from_numpy(x).reshape(-1, 1, 28, 28)    # (N, 784) -> the model's input
        self.y = torch.from_numpy(labels)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def step(self, idx: np.ndarray) -> None:
        """One SGD step on the batch ``idx``, the one the NumPy net just took."""
        batch = torch.from_numpy(idx)
        loss = F.cross_entropy(self.model(self.x[batch]), self.y[batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    @torch.inference_mode()
    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        logits = self.model(torch.from_numpy(x).reshape(-1, 1, 28, 28))
        return float((logits.argmax(1).numpy() == labels).mean())

    def max_weight_diff(self, params: Params) -> float:
        mine = params_from_torch(self.model)
        return max(float(np.abs(mine[k] - params[k]).max()) for k in params)
