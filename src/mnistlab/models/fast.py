"""Architectures for the fast and the accurate recipes (the presets that train them are in
``mnistlab.train.presets``: ``speedrun`` trains sprint, ``best`` best and strided).

    sprint    ~ 99.1% in one epoch, in about a third of speedrun's time: the seed CNN's design,
              narrower, (Conv3x3 valid + ReLU + MaxPool2) 16/32 -> Dense(128) -> Dense(10),
              no BatchNorm, so the fused step (mnistlab.fused, bf16 or fp32) trains it;
              PyTorch's own initialisation. `mnistlab speedrun` trains it.
    speedrun  ~ 99.2% in one epoch (what `mnistlab speedrun` trained before sprint): three
              (conv3x3 -> max-pool -> BatchNorm -> ReLU) blocks, 16/32/64 channels; pooling
              *before* BatchNorm and ReLU (they commute closely enough with a max) does their
              work on a quarter of the pixels: 1.5x faster per step than conv -> BN -> ReLU ->
              pool on this CPU (bf16, channels_last).
    best      ~ 99.6-99.7%: a VGG-style BN CNN, two 3x3 convs per stage (32/64/128), trained
              with random affine augmentation, label smoothing and a one-cycle schedule.
    strided   ~ 99.6-99.7%, a different design for ensembles: no pooling, each stage ends in
              a 5x5 stride-2 conv, unpadded 3x3 convs before it, a 4x4 conv to 1x1 at the end
              (Chris Deotte's Kaggle MNIST CNN, with BatchNorm, dropout 0.4). Half best's
              multiply-adds, about the same time a step; an ensemble's second design, trained
              by the best and robust presets.

All use PyTorch's default (Kaiming-uniform) initialisation: with BatchNorm the Keras
Glorot init of the seed models buys nothing, and sprint trained better without it (99.22%
against 99.09% with it on a validation split, 3 seeds), so these factories take no ``init``
argument.
"""

from __future__ import annotations

from torch import nn

from mnistlab.models.registry import register
from mnistlab.models.seed import cnn
from mnistlab.models.shapes import IMAGE_SIZE, NUM_CLASSES


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    # No bias: the BatchNorm that follows every conv has its own shift.
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)


@register("sprint", "fast CNN for the speedrun: 2 x (Conv3x3 + ReLU + MaxPool2) 16/32 -> "
                    "Dense(128) -> Dense(10); 108,618 parameters")
def sprint(widths: tuple[int, ...] = (16, 32), hidden: int = 128) -> nn.Module:
    # the seed cnn's layout, so mnistlab.fused.supports() it: the fused step trains it
    return cnn(widths=widths, hidden=hidden, init="torch")


@register("speedrun", "fast CNN: 3 x (Conv3x3 -> MaxPool2 -> BN -> ReLU) 16/32/64 -> Dense(10); "
                      "29,178 parameters")
def speedrun(widths: tuple[int, ...] = (16, 32, 64)) -> nn.Module:
    layers: list[nn.Module] = []
    in_ch, side = 1, IMAGE_SIZE
    for w in widths:                            # (B, C, s, s) -> (B, w, s // 2, s // 2)
        layers += [_conv(in_ch, w), nn.MaxPool2d(2), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch, side = w, side // 2               # 28 -> 14 -> 7 -> 3
    layers += [nn.Flatten(), nn.Linear(in_ch * side * side, NUM_CLASSES)]   # (B, 576) -> (B, 10)
    return nn.Sequential(*layers)


@register("best", "accurate CNN: 3 stages x 2 (Conv3x3 -> BN -> ReLU) 32/64/128, max-pool "
                  "after each stage -> Dense(10); 298,410 parameters")
def best(widths: tuple[int, ...] = (32, 64, 128), dropout: float = 0.1) -> nn.Module:
    layers: list[nn.Module] = []
    in_ch, side = 1, IMAGE_SIZE
    for w in widths:
        layers += [_conv(in_ch, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                   _conv(w, w), nn.MaxPool2d(2), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch, side = w, side // 2               # 28 -> 14 -> 7 -> 3
    layers += [nn.Flatten(),                     # (B, 128 * 3 * 3)
               nn.Dropout(dropout),
               nn.Linear(in_ch * side * side, NUM_CLASSES)]
    return nn.Sequential(*layers)


@register("strided", "ensemble CNN without pooling: 2 stages of (Conv3x3 valid x 2 -> Conv5x5 "
                     "stride 2) 32/64, each conv -> BN -> ReLU, Conv4x4 128 -> Dense(10); "
                     "325,994 parameters")
def strided(widths: tuple[int, int] = (32, 64), head: int = 128, dropout: float = 0.4
            ) -> nn.Module:
    def block(in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: int = 0
              ) -> list[nn.Module]:
        return [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=False),
                nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]

    layers: list[nn.Module] = []
    in_ch = 1
    for w in widths:                             # 28 -> 26 -> 24 -> 12;  12 -> 10 -> 8 -> 4
        layers += [*block(in_ch, w, 3), *block(w, w, 3), *block(w, w, 5, stride=2, pad=2),
                   nn.Dropout(dropout)]
        in_ch = w
    layers += [*block(in_ch, head, 4),           # (B, 64, 4, 4) -> (B, 128, 1, 1)
               nn.Flatten(), nn.Dropout(dropout), nn.Linear(head, NUM_CLASSES)]
    return nn.Sequential(*layers)
