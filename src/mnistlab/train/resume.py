"""Resuming a run: the per-epoch checkpoint fit() writes, the check that a run may be
resumed with a config, and the restore of model, optimizer, schedule and random states.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

# Through the package (see train.fit): mnistlab.runs may be mid-import when this module loads.
from mnistlab import runs
from mnistlab.data.batches import Batches
from mnistlab.errors import UserError
from mnistlab.train.config import TrainConfig

Scheduler = torch.optim.lr_scheduler.LRScheduler
# Settings a run may be resumed with changed: they decide where and how fast, not what is
# trained (a run started on a GPU may continue on the CPU).
RESUMABLE_ACROSS = frozenset({"threads", "device"})


def save_epoch(run_dir: Path, model_name: str, model_config: runs.JSONObject, model: nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Scheduler | None, batches: Batches,
               augment_generator: torch.Generator, history: list[runs.HistoryRow]) -> None:
    # The checkpoint is the resume point: written first, whole or not at all (atomic rename).
    runs.save_checkpoint(run_dir, runs.Checkpoint(
        epoch=len(history), model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        scheduler_state=scheduler.state_dict() if scheduler is not None else None,
        rng={"batches": batches.get_state(), "torch": torch.get_rng_state(),
             "augment": augment_generator.get_state()},
        history=history))
    runs.save_weights(run_dir / runs.WEIGHTS, model, model_name, model_config)
    runs.write_history(run_dir, history)


def check_resumable(config: TrainConfig, run_dir: Path) -> None:
    record = runs.read_config(run_dir)
    if record.train is None:
        raise UserError(f"{run_dir / runs.CONFIG} has no training config; cannot resume it")
    mine: dict[str, object] = asdict(config)
    # A setting added after the run started ran with its default, which the reader filled in;
    # one this version does not know (train_extra) differs from anything we could run.
    saved: dict[str, object] = asdict(record.train) | record.train_extra
    diff = sorted(k for k in set(saved) | set(mine)
                  if k not in RESUMABLE_ACROSS and saved.get(k) != mine.get(k))
    if diff:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {mine.get(k)!r})" for k in diff)
        raise UserError(f"cannot resume {run_dir}: it was started with different settings: "
                        f"{shown}; resume without changing them")


def restore(ckpt: runs.Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Scheduler | None, batches: Batches,
            augment_generator: torch.Generator) -> None:
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
        state = ckpt.optimizer_state
        groups = []
        for saved, fresh in zip(state["param_groups"], optimizer.state_dict()["param_groups"],
                                strict=True):
            # JSON turned tuples (Adam's betas) into lists; give them back their type.
            groups.append({k: tuple(v) if isinstance(fresh.get(k), tuple) else v
                           for k, v in saved.items()})
        optimizer.load_state_dict({"state": state["state"], "param_groups": groups})
        match_param_layouts(optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(ckpt.scheduler_state)
        batches.set_state(ckpt.rng["batches"])
        torch.set_rng_state(ckpt.rng["torch"])
        augment_generator.set_state(ckpt.rng["augment"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"the checkpoint does not match this model/optimizer ({exc})") from None


def match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each restored state tensor (Adam's moments, ...) its parameter's memory layout.

    Checkpoints store tensors contiguous; a channels_last parameter then meets NCHW moments,
    and fused optimizers walk all of a parameter's tensors in one memory order, which would
    pair the wrong elements. Copying into ``empty_like(param)`` keeps the values, fixes the order.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if (isinstance(value, torch.Tensor) and value.shape == p.shape
                        and value.stride() != p.stride()):
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
