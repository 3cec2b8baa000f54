"""Which precision and engine a run trains in, and the model layout that goes with them.

    precision = resolve_precision(config, model)      # "fp32" | "bf16"
    engine = resolve_engine(config, model, precision) # "fused" | "autograd" (fused: cpu only)
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from mnistlab.errors import UserError
from mnistlab.fused import FusedCNN, supports
from mnistlab.train.config import TrainConfig


def resolve_precision(config: TrainConfig, model: nn.Module | None = None,
                      device: str = "cpu") -> str:
    """``auto`` -> bf16 for convolutional models on a device with native bf16, else fp32.

    Measured here (AVX-512 BF16): the seed CNN trains about 2x faster in bf16 autocast with
    channels_last at the same accuracy; the FC model's matrices are too small to gain.
    ``device`` is a device type (cpu | cuda | mps); MPS stays fp32 (its bf16 autocast is partial).
    """
    if config.precision != "auto":
        return config.precision
    has_conv = model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if device == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
    elif device == "cpu":
        bf16_ok = (torch.backends.mkldnn.is_available()
                   and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    else:
        bf16_ok = False
    return "bf16" if has_conv and bf16_ok else "fp32"


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (a device type; weights stay fp32; matmuls and convs run in
    bf16)."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_engine(config: TrainConfig, model: nn.Module, precision: str,
                   device: str = "cpu") -> str:
    """``auto`` -> ``fused`` for the seed CNN's family in bf16 on the CPU (mnistlab.fused: a
    hand-written CPU step checked against autograd, 1.9x faster than autocast here), else
    ``autograd``."""
    fits = precision == "bf16" and supports(model)
    if config.engine == "fused" and device != "cpu":
        raise UserError(f"the fused engine runs on the CPU only, not on {device}; "
                        "use --engine autograd or --device cpu")
    if config.engine == "fused" and not fits:
        raise UserError("the fused engine trains the cnn family (3x3 conv + relu + 2x2 pool "
                        "blocks, then two dense layers) in bf16 only; use --engine autograd")
    if config.engine == "auto":
        return "fused" if fits and device == "cpu" else "autograd"
    return config.engine


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    # channels_last lets oneDNN's bf16 convolutions skip layout reorders (measured 1.6-1.8x).
    if precision == "bf16" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def make_engine(name: str, model: nn.Module) -> Any:
    if name != "fused":
        return None
    engine = FusedCNN(model)
    engine.warm_up()              # compiles (or loads) its kernels before any step is timed
    return engine
