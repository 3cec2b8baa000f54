"""Keras-style model summaries: layer, output shape, parameters; totals; multiply-adds per image.

torchinfo does the counting (a forward pass on one (1, 1, 28, 28) image); this module only lays
the figures out as Keras's ``model.summary()`` does, with exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torchinfo
from torch import nn

INPUT_SIZE = (1, 1, 28, 28)   # one image: a batch of one, one channel, 28 x 28 pixels


@dataclass
class Layer:
    name: str               # e.g. "conv2d (Conv2d)"
    output_shape: list[int]  # without the batch dimension, e.g. [64, 26, 26]
    params: int


@dataclass
class Summary:
    model: str
    layers: list[Layer]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    mult_adds: int          # multiply-adds for one image, forward pass

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model,
                "layers": [{"name": x.name, "output_shape": x.output_shape, "params": x.params}
                           for x in self.layers],
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params,
                "mult_adds_per_image": self.mult_adds,
                "flops_per_image": 2 * self.mult_adds}


def summarize(model: nn.Module, name: str = "") -> Summary:
    stats = torchinfo.summary(model, input_size=INPUT_SIZE, verbose=0, device="cpu",
                              col_names=("output_size", "num_params"))
    layers = []
    seen: dict[str, int] = {}  # Keras numbers layers of one type: conv2d, conv2d_1, ...
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue  # containers: their leaves are listed instead
        kind = info.class_name.lower()
        n = seen[kind] = seen.get(kind, -1) + 1
        shape = list(info.output_size[1:]) if info.output_size else []
        layers.append(Layer(f"{kind}{f'_{n}' if n else ''} ({info.class_name})", shape,
                            int(info.num_params)))
    trainable = int(stats.trainable_params)
    return Summary(model=name or type(model).__name__, layers=layers,
                   total_params=int(stats.total_params), trainable_params=trainable,
                   non_trainable_params=int(stats.total_params) - trainable,
                   mult_adds=int(stats.total_mult_adds))


def render(summary: Summary) -> str:
    """The Keras table: ``Layer (type) | Output Shape | Param #`` and the totals below."""
    rows = [(x.name, "(None, " + ", ".join(map(str, x.output_shape)) + ")", f"{x.params:,}")
            for x in summary.layers]
    head = ("Layer (type)", "Output Shape", "Param #")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows)) + 4
    w1 = max(len(head[1]), *(len(r[1]) for r in rows)) + 4
    w2 = max(len(head[2]), *(len(r[2]) for r in rows))
    width = w0 + w1 + w2
    lines = [f'Model: "{summary.model}"', "━" * width,
             f"{head[0]:<{w0}}{head[1]:<{w1}}{head[2]:>{w2}}", "━" * width]
    for i, (a, b, c) in enumerate(rows):
        lines.append(f"{a:<{w0}}{b:<{w1}}{c:>{w2}}")
        lines.append("─" * width if i < len(rows) - 1 else "━" * width)
    lines += [
        f" Total params: {summary.total_params:,}",
        f" Trainable params: {summary.trainable_params:,}",
        f" Non-trainable params: {summary.non_trainable_params:,}",
        f" Multiply-adds per image (forward): {summary.mult_adds:,} "
        f"({2 * summary.mult_adds / 1e6:.1f} MFLOP)",
    ]
    return "\n".join(lines)
