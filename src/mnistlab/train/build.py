"""What a run trains: the seeded model, its optimizer and its learning-rate schedule."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from mnistlab.errors import UserError
from mnistlab.models import build_model, factory
from mnistlab.train import optimizers
from mnistlab.train.config import TrainConfig


def build(config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The model for ``config`` (seeded) and the model config that rebuilds it."""
    model_config = dict(config.model_config)
    params = inspect.signature(factory(config.model)).parameters
    if "init" in params and "init" not in model_config:
        model_config["init"] = config.init
    torch.manual_seed(config.seed)
    try:
        model = build_model(config.model, **model_config)
    except TypeError as exc:
        raise UserError(f"bad model config for {config.model!r}: {exc}") from None
    return model, model_config


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # foreach/fused variants update all tensors in a few kernels instead of one per tensor;
    # mnistlab.train.optimizers hands them channels_last weights without copies.
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adam":
        return optimizers.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2),
                               eps=config.eps, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adamw":
        return optimizers.AdamW(params, lr=config.lr, betas=(config.beta1, config.beta2),
                                eps=config.eps, weight_decay=config.weight_decay, fused=True)
    return torch.optim.RMSprop(params, lr=config.lr, eps=config.eps, momentum=config.momentum,
                               weight_decay=config.weight_decay, foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
            cycle_momentum=config.cycle_momentum)
    return None
