"""checkpoint.safetensors: what resumes a run exactly (weights, optimizer state, RNG states),
written atomically after each epoch; tensors by prefix, everything else as JSON metadata."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from mnistlab import atomic
from mnistlab.errors import UserError
from mnistlab.runs.files import CHECKPOINT
from mnistlab.runs.schema import HistoryRow
from mnistlab.runs.typed import JSONObject, SchemaError
from mnistlab.runs.weights import (
    SHA256,
    check_sha256,
    one_line,
    read_safetensors,
    tensors_sha256,
)

CHECKPOINT_FORMAT = "mnistlab-checkpoint-1"


@dataclass
class Checkpoint:
    """What resumes a run exactly: state after ``epoch`` finished epochs."""

    epoch: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any] | None
    rng: dict[str, torch.Tensor]                   # generator name -> torch.ByteTensor state
    history: list[HistoryRow] = field(default_factory=list)
    extra: JSONObject = field(default_factory=dict)


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> None:
    """One atomic safetensors file: tensors by prefix, everything else as JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in ckpt.model_state.items():
        # .cpu(): a GPU run's checkpoint is written from the CPU side, as a CPU run's
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, state in ckpt.optimizer_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    for name, state in ckpt.rng.items():
        tensors[f"rng.{name}"] = state.contiguous().clone()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "epoch": str(ckpt.epoch),
        "optimizer_param_groups": json.dumps(ckpt.optimizer_state["param_groups"]),
        "optimizer_scalars": json.dumps(opt_scalars),
        "scheduler": json.dumps(ckpt.scheduler_state),
        "history": json.dumps([row.to_dict() for row in ckpt.history]),
        "extra": json.dumps(ckpt.extra),
        SHA256: tensors_sha256(tensors),      # checked on resume: a damaged file is refused
    }
    atomic.write_bytes(Path(run_dir) / CHECKPOINT, safetensors_bytes(tensors, metadata=metadata))


_OPT_KEY = re.compile(r"optimizer\.(\d+)\.(.+)")


def load_checkpoint(run_dir: str | os.PathLike[str]) -> Checkpoint:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{path} not found: nothing to resume (no epoch of this run finished)")
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an mnistlab checkpoint")
    check_sha256(path, tensors, metadata,
                 "restore it from a copy, or remove it to train the run from its first epoch")
    try:
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
        state: dict[int, dict[str, Any]] = {}
        for idx, values in json.loads(metadata["optimizer_scalars"]).items():
            state.setdefault(int(idx), {}).update(values)
        for k, v in tensors.items():
            m = _OPT_KEY.fullmatch(k)
            if m:
                state.setdefault(int(m.group(1)), {})[m.group(2)] = v
        optimizer_state = {"state": state,
                           "param_groups": json.loads(metadata["optimizer_param_groups"])}
        return Checkpoint(epoch=int(metadata["epoch"]), model_state=model_state,
                          optimizer_state=optimizer_state,
                          scheduler_state=json.loads(metadata["scheduler"]), rng=rng,
                          history=[HistoryRow.from_dict(row)
                                   for row in json.loads(metadata["history"])],
                          extra=json.loads(metadata.get("extra", "{}")))
    except (KeyError, ValueError, SchemaError) as exc:
        raise UserError(f"{path} is an incomplete checkpoint ({one_line(exc)})") from None
