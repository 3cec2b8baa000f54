"""The seed report's two models, layer for layer, with Keras's default initialisation.

Keras initialises Dense and Conv2D weights Glorot-uniform and biases to zero; the seed's numbers
came from that, so ``init="keras"`` (the default) reproduces it. ``init="torch"`` keeps
PyTorch's own defaults.
"""

from __future__ import annotations

from torch import nn

from mnistlab.models.registry import register
from mnistlab.models.shapes import IMAGE_SIZE, NUM_CLASSES


def keras_init_(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases on every Linear and Conv2d, as Keras does."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _init(model: nn.Module, init: str) -> nn.Module:
    if init == "keras":
        return keras_init_(model)
    if init == "torch":
        return model
    raise ValueError(f"init must be 'keras' or 'torch', got {init!r}")


@register("fc", "seed baseline: Flatten -> Dense(128, relu) -> Dense(10); 101,770 parameters")
def fc(hidden: int = 128, init: str = "keras") -> nn.Module:
    model = nn.Sequential(
        nn.Flatten(),                                   # (B, 784)
        nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden),     # (B, 128)
        nn.ReLU(),
        nn.Linear(hidden, NUM_CLASSES),                 # (B, 10) logits
    )
    return _init(model, init)


def _conv_out(size: int, blocks: int) -> int:
    """Side length after ``blocks`` of (3x3 valid conv, 2x2 max-pool): 28 -> 13 -> 5 -> 1."""
    for _ in range(blocks):
        size = (size - 2) // 2
    return size


@register("cnn", "seed CNN: 3 x (Conv3x3 + ReLU + MaxPool2) 64/128/256 -> Dense(256) -> Dense(10); "
                 "438,026 parameters")
def cnn(widths: tuple[int, ...] = (64, 128, 256), hidden: int = 256,
        init: str = "keras") -> nn.Module:
    layers: list[nn.Module] = []
    in_ch = 1
    for w in widths:                                    # (B, C, H, W) -> (B, w, (H-2)//2, ...)
        layers += [nn.Conv2d(in_ch, w, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2)]
        in_ch = w
    side = _conv_out(IMAGE_SIZE, len(widths))           # 1 for the seed layout
    layers += [
        nn.Flatten(),                                   # (B, 256)
        nn.Linear(in_ch * side * side, hidden),
        nn.ReLU(),
        nn.Linear(hidden, NUM_CLASSES),                 # (B, 10) logits
    ]
    return _init(nn.Sequential(*layers), init)
