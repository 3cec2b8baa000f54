"""The seed's FC network in plain NumPy: forward, softmax cross-entropy, backward by hand, SGD.

Shapes (B = batch size, H = 128 hidden units)::

    x (B, 784) -> h = x @ W1 + b1 (B, H) -> a = relu(h) -> z = a @ W2 + b2 (B, 10) logits
    loss = mean over the batch of -log softmax(z)[label]

Weights are stored (in, out) so that a layer is one matmul ``x @ W``; ``torch.nn.Linear`` stores
the transpose, (out, in). No autograd anywhere here: ``backward`` is the chain rule written out,
and ``mnistlab.mechanics.gradcheck`` proves it against torch and finite differences.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

Params = dict[str, np.ndarray]  # "W1" (784, H), "b1" (H,), "W2" (H, 10), "b2" (10,)
Cache = tuple[np.ndarray, np.ndarray, np.ndarray]  # what backward needs: x, h, a
PARAM_NAMES = ("W1", "b1", "W2", "b2")


def init_params(rng: np.random.Generator, *, inputs: int = 784, hidden: int = 128,
                classes: int = 10, dtype: type = np.float32) -> Params:
    """Keras's default: Glorot-uniform weights, U(-l, l) with l = sqrt(6 / (fan_in + fan_out));
    zero biases."""
    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)

    return {
        "W1": glorot(inputs, hidden), "b1": np.zeros(hidden, dtype),
        "W2": glorot(hidden, classes), "b2": np.zeros(classes, dtype),
    }


def flatten_images(images: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 784) in [0, 1], the same scaling as ``data.to_tensors``."""
    return images.reshape(len(images), -1).astype(dtype) / dtype(255.0)


def forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Logits (B, 10) and the activations that ``backward`` reuses."""
    h = x @ params["W1"] + params["b1"]         # (B, H) pre-activation
    a = np.maximum(h, 0)                        # (B, H) ReLU
    z = a @ params["W2"] + params["b2"]         # (B, 10) logits
    return z, (x, h, a)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over the batch, and its gradient with respect to the logits (B, 10).

    Stable: subtracting each row's maximum leaves softmax unchanged and keeps exp() <= 1, and the
    loss is taken from log-softmax directly, so a confident wrong answer gives a large finite
    loss instead of log(0).
    """
    batch = len(labels)
    rows = np.arange(batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, labels].mean()
    # d loss / d z = (softmax(z) - onehot(label)) / B: the softmax Jacobian and the log cancel.
    dlogits = np.exp(log_probs)
    dlogits[rows, labels] -= 1.0
    dlogits /= batch
    return float(loss), dlogits


def backward(params: Params, cache: Cache, dlogits: np.ndarray) -> Params:
    """The chain rule, layer by layer from the loss back to the input weights."""
    x, h, a = cache
    grads = {
        "W2": a.T @ dlogits,                    # (H, 10): z = a W2 + b2
        "b2": dlogits.sum(axis=0),              # (10,): the bias is added to every row
    }
    da = dlogits @ params["W2"].T               # (B, H)
    dh = da * (h > 0)                           # ReLU passes gradient only where it was active
    grads["W1"] = x.T @ dh                      # (784, H)
    grads["b1"] = dh.sum(axis=0)                # (H,)
    return grads


def loss_and_grads(params: Params, x: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
    logits, cache = forward(params, x)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    return loss, backward(params, cache, dlogits)


def sgd_step(params: Params, grads: Params, lr: float) -> None:
    """Plain SGD, in place: p <- p - lr * dL/dp."""
    for name in PARAM_NAMES:
        params[name] -= lr * grads[name]


def evaluate(params: Params, x: np.ndarray, labels: np.ndarray,
             batch_size: int = 10_000) -> dict[str, float]:
    """Mean loss and accuracy over ``x`` (N, 784), in chunks to bound memory."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], labels[i:i + batch_size]
        logits, _ = forward(params, xb)
        loss, _ = softmax_cross_entropy(logits, yb)
        total_loss += loss * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def train_epoch(params: Params, x: np.ndarray, labels: np.ndarray, *, lr: float,
                batch_size: int, rng: np.random.Generator,
                on_batch: Callable[[np.ndarray], None] | None = None) -> dict[str, float]:
    """One shuffled pass (the last batch may be short, as in Keras). Returns the running mean of
    the batch losses and accuracies, weighted by batch size: what Keras prints. ``on_batch``
    gets each batch's indices into ``x`` after its step."""
    order = rng.permutation(len(x))
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        xb, yb = x[idx], labels[idx]
        logits, cache = forward(params, xb)
        loss, dlogits = softmax_cross_entropy(logits, yb)
        sgd_step(params, backward(params, cache, dlogits), lr)
        total_loss += loss * len(idx)
        correct += int((logits.argmax(axis=1) == yb).sum())
        if on_batch is not None:
            on_batch(idx)
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def fit(x: np.ndarray, labels: np.ndarray, *, epochs: int = 5, lr: float = 0.1,
        batch_size: int = 64, seed: int = 0, hidden: int = 128,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        on_batch: Callable[[np.ndarray], None] | None = None,
        ) -> tuple[Params, list[dict[str, float]]]:
    """Train from a seeded Glorot init; the seed's FC settings are the defaults.

    Returns the parameters and one row per epoch: ``epoch``, ``steps``, ``train_loss``,
    ``train_accuracy`` (running means, as Keras shows), ``seconds`` (training only), and with
    ``validation = (x_test, labels_test)`` also ``test_loss`` and ``test_accuracy``. One
    ``numpy.random.Generator`` seeded with ``seed`` draws the init and then each epoch's
    order, so the same seed gives the same result.
    """
    rng = np.random.default_rng(seed)
    params = init_params(rng, inputs=x.shape[1], hidden=hidden, dtype=x.dtype.type)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train = train_epoch(params, x, labels, lr=lr, batch_size=batch_size, rng=rng,
                            on_batch=on_batch)
        row = {"epoch": epoch, "steps": -(-len(x) // batch_size),
               "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "seconds": time.perf_counter() - start}
        if validation is not None:
            test = evaluate(params, *validation)
            row.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return params, history
