"""What a model makes of one 28x28 drawing: feature maps, saliency, the FC's class template,
and how far several models disagree. Pure computation on a model and an image; the lab's routes
(mnistlab.serve.lab) only turn these into JSON.

    blocks = feature_maps(cnn, image)            # per conv block, after ReLU and pooling
    s = occlusion_saliency(cnn, image, digit)    # (28, 28): how much each pixel's ink helped
    t = fc_template(fc, digit)                   # (28, 28): W2[c] @ W1 for the seed FC

Images are (28, 28) float arrays in [0, 1], ink white on black (as preprocess returns them).
All functions are safe to call from several threads at once on the same model: no hooks, no
state on the model, gradients through ``torch.autograd.grad`` (nothing lands in ``.grad``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SIDE = 28
OCCLUSION_PATCH = 4     # px: about a stroke's width at 28x28 (MNIST strokes are 2-4 px)
OCCLUSION_STRIDE = 2    # px: 13 x 13 = 169 occluded copies, one batch


class NotExplainable(ValueError):
    """The model lacks what the view needs (no conv layer, not a plain FC stack)."""


@dataclass
class FeatureMap:
    channel: int
    mean: float                 # mean activation over the map: the order they are shown in
    peak: float
    values: np.ndarray          # (H, W) float32, >= 0 after ReLU


@dataclass
class ConvBlock:
    index: int                  # 1-based, in the order the image passes them
    channels: int
    height: int
    width: int
    maps: list[FeatureMap]      # the most active first


def _tensor(image: np.ndarray) -> torch.Tensor:
    x = np.asarray(image, dtype=np.float32)
    if x.shape != (SIDE, SIDE):
        raise ValueError(f"expected a (28, 28) image, got {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]      # (1, 1, 28, 28)


def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise NotExplainable(f"{type(model).__name__} is not a layer-by-layer (Sequential) model")
    return list(model)


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def feature_maps(model: nn.Module, image: np.ndarray) -> list[ConvBlock]:
    """The activations at the end of each conv block: taken just before the next conv (or the
    flatten), once the picture has shrunk (a pooling layer or a strided conv), so after ReLU
    and pooling whatever their order (the seed's conv-ReLU-pool, speedrun's conv-pool-BN-ReLU,
    best's two convs a stage, strided's stride-2 conv closing each stage).
    """
    layers = _layers(model)
    if not has_conv(model):
        raise NotExplainable("the model has no convolution, so no feature maps")
    captured: list[torch.Tensor] = []
    pooled = False
    with torch.inference_mode():
        x = _tensor(image)
        for layer in layers:
            if pooled and isinstance(layer, nn.Conv2d | nn.Flatten | nn.Linear):
                captured.append(x)
                pooled = False
            x = layer(x)
            pooled = pooled or _shrinks(layer)
        if pooled and x.ndim == 4:
            captured.append(x)
    blocks = []
    for i, act in enumerate(captured, start=1):
        a = act[0].float().numpy()                                          # (C, H, W)
        means = a.mean(axis=(1, 2))
        order = np.argsort(-means, kind="stable")
        blocks.append(ConvBlock(index=i, channels=a.shape[0], height=a.shape[1],
                                width=a.shape[2],
                                maps=[FeatureMap(int(c), float(means[c]), float(a[c].max()),
                                                 a[c]) for c in order]))
    return blocks


def _shrinks(layer: nn.Module) -> bool:
    """Whether ``layer`` ends a block by making the picture smaller."""
    if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        return True
    return isinstance(layer, nn.Conv2d) and any(s > 1 for s in layer.stride)


def probabilities(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 10) softmax probabilities (float64)."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
        return torch.softmax(model(x).double(), dim=1).numpy()


def gradient_saliency(model: nn.Module, image: np.ndarray, target: int) -> np.ndarray:
    """|d logit[target] / d pixel|, (28, 28), scaled so the largest is 1 (all 0 if flat)."""
    x = _tensor(image).requires_grad_(True)
    with torch.enable_grad():
        logit = model(x)[0, target]
        (grad,) = torch.autograd.grad(logit, x)
    g = grad[0, 0].abs().numpy().astype(np.float64)
    return g / g.max() if g.max() > 0 else g


def occlusion_saliency(model: nn.Module, image: np.ndarray, target: int,
                       patch: int = OCCLUSION_PATCH, stride: int = OCCLUSION_STRIDE) -> np.ndarray:
    """How much the target's probability drops when a ``patch`` x ``patch`` square is blanked
    (set to 0, the background), averaged over the squares covering each pixel: (28, 28), in
    probability units, positive where the ink argued for ``target``, negative against it."""
    base = np.asarray(image, dtype=np.float32)
    starts = range(0, SIDE - patch + 1, stride)
    copies, boxes = [], []
    for r in starts:
        for c in starts:
            occluded = base.copy()
            occluded[r:r + patch, c:c + patch] = 0.0
            copies.append(occluded)
            boxes.append((r, c))
    p0 = probabilities(model, base[None])[0, target]
    drops = p0 - probabilities(model, np.stack(copies))[:, target]
    total = np.zeros((SIDE, SIDE))
    count = np.zeros((SIDE, SIDE))
    for (r, c), d in zip(boxes, drops, strict=True):
        total[r:r + patch, c:c + patch] += d
        count[r:r + patch, c:c + patch] += 1
    return total / np.maximum(count, 1)


def fc_template(model: nn.Module, digit: int) -> np.ndarray:
    """The FC's linear view of class ``digit``: the product of its Linear weights, last row
    first, (28, 28). For the seed FC (784 -> 128 -> 10) it is W2[c] @ W1; ReLU and biases are
    left out, so it is what the class's score rewards before the hidden units switch off."""
    layers = _layers(model)
    if has_conv(model):
        raise NotExplainable("the model has convolutions; the class template is for FC models")
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if not linears or linears[0].in_features != SIDE * SIDE:
        raise NotExplainable("the model's first layer does not take the 784 pixels")
    if not 0 <= digit < linears[-1].out_features:
        raise ValueError(f"digit must be 0 to {linears[-1].out_features - 1}, got {digit}")
    with torch.inference_mode():
        row = linears[-1].weight[digit].double()                 # (hidden,)
        for lin in reversed(linears[:-1]):
            row = row @ lin.weight.double()                       # (hidden,) @ (hidden, in)
    return row.reshape(SIDE, SIDE).numpy()


@dataclass
class Disagreement:
    agree: bool                 # every model's top digit is the same
    digits: list[int]           # each model's top digit, in the order given
    max_total_variation: float  # largest pairwise 0.5 * sum |p - q|: 0 same, 1 disjoint
    spread: list[float]         # per digit: max - min probability across the models


def disagreement(probs: list[np.ndarray]) -> Disagreement:
    p = np.asarray(probs, dtype=np.float64)                     # (models, 10)
    digits = [int(d) for d in p.argmax(axis=1)]
    tv = max((0.5 * float(np.abs(p[i] - p[j]).sum())
              for i in range(len(p)) for j in range(i + 1, len(p))), default=0.0)
    spread = (p.max(axis=0) - p.min(axis=0)).tolist() if len(p) else [0.0] * 10
    return Disagreement(agree=len(set(digits)) <= 1, digits=digits, max_total_variation=tv,
                        spread=[float(s) for s in spread])


def confusion_on(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                 batch: int = 1000) -> np.ndarray:
    """(10, 10) counts, rows the true digit, columns the predicted one; images uint8 (N, 28, 28)."""
    cm = np.zeros((10, 10), dtype=np.int64)
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[i:i + batch], dtype=np.float32) / 255.0)
            pred = model(x[:, None]).argmax(dim=1).numpy()
            np.add.at(cm, (np.asarray(labels[i:i + batch], dtype=np.int64), pred), 1)
    return cm
