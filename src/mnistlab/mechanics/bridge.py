"""NumPy <-> torch parameters of the FC network: the one bridge between ``numpy_net`` and the
torch ``fc`` model, used by the gradient check and the torch twin alike."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mnistlab.mechanics.numpy_net import Params


def params_from_torch(model: nn.Module) -> Params:
    """Copy an ``fc``-shaped torch model's two Linear layers into NumPy (in, out) layout."""
    first, second = [m for m in model.modules() if isinstance(m, nn.Linear)]
    as_np = lambda t: t.detach().cpu().double().numpy().copy()  # noqa: E731
    return {"W1": as_np(first.weight).T.copy(), "b1": as_np(first.bias),
            "W2": as_np(second.weight).T.copy(), "b2": as_np(second.bias)}


def load_into_torch(params: Params, model: nn.Module) -> None:
    """Write NumPy (in, out) parameters into an ``fc``-shaped torch model, in its own dtype."""
    first, second = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, w, b in ((first, "W1", "b1"), (second, "W2", "b2")):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(params[w].T)))
            layer.bias.copy_(torch.from_numpy(params[b]))
