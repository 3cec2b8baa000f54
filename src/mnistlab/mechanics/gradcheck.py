"""Prove the hand-written backward pass of ``numpy_net`` two independent ways, in float64.

1. Against torch autograd: the project's own ``fc`` model, given the very same weights, and the
   same batch. Every gradient element must agree to a relative error below 1e-7 (float64 gives
   about 1e-16, so anything near the threshold is a real bug, not rounding).
2. Against central finite differences, (L(w + eps) - L(w - eps)) / (2 eps), on a random sample of
   weights from each parameter tensor. Its error is O(eps^2) truncation plus rounding of about
   1e-16 * loss / eps = 2e-11 absolute at eps = 1e-5: about 1e-9 to 1e-7 relative on ordinary
   gradients, hence a looser threshold (1e-5). A larger eps risks stepping across a ReLU kink
   (eps = 1e-4 did, once in a few seeds: error 1e-2); a smaller one drowns in rounding.

Relative error of one element: |a - b| / max(|a|, |b|, floor). Against autograd the floor is
1e-8: it only keeps exact zeros (weights of pixels blank in every image of the batch have
gradient 0) from dividing by 0. Against finite differences it is 1e-4: below that magnitude the
2e-11 rounding noise of the difference quotient, not the backward pass, would set the figure
(a gradient of 3.6e-6 once measured 7e-6 "relative error" from noise alone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from mnistlab.errors import UserError
from mnistlab.mechanics import numpy_net
from mnistlab.mechanics.bridge import load_into_torch
from mnistlab.mechanics.numpy_net import PARAM_NAMES, Params
from mnistlab.mechanics.scratch import load_flat
from mnistlab.models import build_model

AUTOGRAD_TOLERANCE = 1e-7
FINITE_DIFF_TOLERANCE = 1e-5
AUTOGRAD_FLOOR = 1e-8
FINITE_DIFF_FLOOR = 1e-4


@dataclass
class GradcheckResult:
    batch_size: int
    loss_numpy: float
    loss_torch: float
    max_rel_error_autograd: float
    max_rel_error_finite_diff: float
    finite_diff_samples: int
    eps: float
    per_param_autograd: dict[str, float] = field(default_factory=dict)
    per_param_finite_diff: dict[str, float] = field(default_factory=dict)
    autograd_tolerance: float = AUTOGRAD_TOLERANCE
    finite_diff_tolerance: float = FINITE_DIFF_TOLERANCE

    @property
    def autograd_ok(self) -> bool:
        # Written as `error < tolerance` so that a NaN error fails.
        return bool(self.max_rel_error_autograd < self.autograd_tolerance)

    @property
    def finite_diff_ok(self) -> bool:
        return bool(self.max_rel_error_finite_diff < self.finite_diff_tolerance)

    @property
    def passed(self) -> bool:
        return self.autograd_ok and self.finite_diff_ok

    def to_dict(self) -> dict:
        return {**asdict(self), "autograd_ok": self.autograd_ok,
                "finite_diff_ok": self.finite_diff_ok, "passed": self.passed}


def relative_error(a: np.ndarray, b: np.ndarray, floor: float) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


def torch_loss_and_grads(params: Params, x: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
    """The same loss and gradients from ``build_model("fc")`` in float64 and torch autograd."""
    model = build_model("fc").double()
    load_into_torch(params, model)
    xt = torch.from_numpy(x).reshape(-1, 1, 28, 28)           # the model's own input shape
    loss = F.cross_entropy(model(xt), torch.from_numpy(labels.astype(np.int64)))
    torch_params = [p for m in model.modules() if isinstance(m, torch.nn.Linear)
                    for p in (m.weight, m.bias)]
    gw1, gb1, gw2, gb2 = torch.autograd.grad(loss, torch_params)
    grads = {"W1": gw1.numpy().T, "b1": gb1.numpy(), "W2": gw2.numpy().T, "b2": gb2.numpy()}
    return float(loss.detach()), grads


def finite_difference(params: Params, x: np.ndarray, labels: np.ndarray, name: str,
                      index: int, eps: float) -> float:
    """Central difference of the loss along one weight (flat ``index`` into ``params[name]``)."""
    flat = params[name].reshape(-1)             # a view: writing it perturbs the weight
    saved = flat[index]
    try:
        flat[index] = saved + eps
        plus = numpy_net.softmax_cross_entropy(numpy_net.forward(params, x)[0], labels)[0]
        flat[index] = saved - eps
        minus = numpy_net.softmax_cross_entropy(numpy_net.forward(params, x)[0], labels)[0]
    finally:
        flat[index] = saved
    return (plus - minus) / (2 * eps)


def gradcheck(x: np.ndarray, labels: np.ndarray, *, seed: int = 0, samples_per_param: int = 16,
              eps: float = 1e-5, hidden: int = 128) -> GradcheckResult:
    """Check ``numpy_net``'s gradients on the batch ``x`` (B, 784) in [0, 1], ``labels`` (B,).

    Weights: Glorot-uniform from ``seed``, biases small random values rather than zeros so that
    the bias terms of the forward pass are exercised too.
    """
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    params = numpy_net.init_params(rng, inputs=x.shape[1], hidden=hidden, dtype=np.float64)
    params["b1"] = rng.uniform(-0.1, 0.1, size=params["b1"].shape)
    params["b2"] = rng.uniform(-0.1, 0.1, size=params["b2"].shape)

    loss_np, grads = numpy_net.loss_and_grads(params, x, labels)
    loss_torch, grads_torch = torch_loss_and_grads(params, x, labels)
    per_autograd = {n: float(relative_error(grads[n], grads_torch[n], AUTOGRAD_FLOOR).max())
                    for n in PARAM_NAMES}

    per_fd = {}
    for name in PARAM_NAMES:
        size = params[name].size
        picks = rng.choice(size, size=min(samples_per_param, size), replace=False)
        numeric = [finite_difference(params, x, labels, name, int(i), eps) for i in picks]
        analytic = grads[name].reshape(-1)[picks]
        per_fd[name] = float(relative_error(analytic, numeric, FINITE_DIFF_FLOOR).max())

    return GradcheckResult(
        batch_size=len(x), loss_numpy=loss_np, loss_torch=loss_torch,
        max_rel_error_autograd=float(np.max(list(per_autograd.values()))),  # NaN propagates
        max_rel_error_finite_diff=float(np.max(list(per_fd.values()))),
        finite_diff_samples=sum(min(samples_per_param, params[n].size) for n in PARAM_NAMES),
        eps=eps, per_param_autograd=per_autograd, per_param_finite_diff=per_fd,
    )


def gradcheck_mnist(*, batch_size: int = 32, seed: int = 0, samples_per_param: int = 16,
                    eps: float = 1e-5, dataset: str = "mnist") -> GradcheckResult:
    """``gradcheck`` on the first ``batch_size`` training images of ``dataset``, in float64."""
    if batch_size <= 0 or samples_per_param <= 0:
        raise UserError("batch size and samples must be positive whole numbers, got "
                        f"{batch_size} and {samples_per_param}")
    if not eps > 0:
        raise UserError(f"eps must be a positive number, got {eps!r}")
    x, labels = load_flat(dataset, "train", batch_size, dtype=np.float64)
    # One BLAS thread: (32 x 784) matrices gain nothing from more, and lose much on a busy CPU.
    with threadpool_limits(limits=1, user_api="blas"):
        return gradcheck(x, labels, seed=seed, samples_per_param=samples_per_param, eps=eps)
