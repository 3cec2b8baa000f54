"""Run directories: everything one training run leaves behind, written atomically, never pickled.

    runs/<name>/config.json              what repeats it: training config, versions, CPU, threads
                model.safetensors        weights; metadata: format, model name, model config (JSON)
                checkpoint.safetensors   after each epoch: weights, optimizer state, RNG states;
                                         metadata: epoch, history, optimizer/scheduler settings
                history.csv / .json      one row per finished epoch
                metrics.json             final figures (present only once the run has finished)

Every reader turns a missing, foreign or damaged file into a ``UserError`` (one line, exit 2).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from mnistlab import __version__, atomic
from mnistlab.errors import UserError
from mnistlab.machine import openmp_wait
from mnistlab.paths import run_roots, runs_dir

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
METRICS = "metrics.json"
FORMAT = "mnistlab-model-1"          # metadata["format"] of model.safetensors
CHECKPOINT_FORMAT = "mnistlab-checkpoint-1"


# --- locating runs ---------------------------------------------------------------------------

def new_run_dir(stem: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Create and return a fresh folder ``root/<stem>-<UTC time>`` (never an existing one)."""
    base = Path(root) if root is not None else runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for i in range(1000):
        path = base / (f"{stem}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder under {base}")


def resolve_run(run: str | os.PathLike[str]) -> Path:
    """A run folder from a path, or from a name under the runs folder; UserError if not a run."""
    path = Path(run).expanduser()
    if not path.exists() and not path.is_absolute():
        candidate = runs_dir() / path
        if candidate.exists():
            path = candidate
    if not path.exists():
        raise UserError(f"run {str(run)!r} not found: expected a run folder (as written by "
                        f"`mnistlab train`) or a name under {runs_dir()}")
    if path.is_file():
        raise UserError(f"{path} is a file; expected a run folder holding {CONFIG} and {WEIGHTS}")
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise UserError(f"{path} is not an mnistlab run: it lacks {CONFIG} or {WEIGHTS}; "
                        "train one with `mnistlab train MODEL`")
    return path.resolve()


def resolve_resumable(run: str | os.PathLike[str]) -> Path:
    """The folder of a started run (config.json present; weights may not be, yet)."""
    path = Path(run).expanduser()
    if not path.is_dir():
        raise UserError(f"cannot resume {str(run)!r}: no such run folder")
    if not (path / CONFIG).is_file():
        raise UserError(f"cannot resume {path}: it is not an mnistlab run (no {CONFIG})")
    return path.resolve()


def remove_partial_writes(run_dir: Path) -> None:
    """Delete temp files that a killed process left mid-write (atomic writes' ``.NAME.*.tmp``)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# --- config and environment ------------------------------------------------------------------

def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions and machine facts that decide whether a run can be repeated bit for bit."""
    import numpy
    import safetensors

    return {
        "mnistlab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        **openmp_wait(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic.write_json(Path(run_dir) / CONFIG, config)


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return _read_json(Path(run_dir) / CONFIG, "config")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: the run has no {what} file "
                        "(was it interrupted before finishing?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable {what} file ({exc}); "
                        "re-run the training that wrote it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an mnistlab {what} file (expected a JSON object)")
    return data


# --- weights ---------------------------------------------------------------------------------

def _state_tensors(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    # safetensors needs contiguous, unshared tensors; channels_last weights are not contiguous.
    return {prefix + k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def weights_bytes(model: nn.Module, model_name: str, model_config: dict[str, Any]) -> bytes:
    """model.safetensors as bytes: the state dict, plus what is needed to rebuild the model."""
    metadata = {"format": FORMAT, "model": model_name,
                "model_config": json.dumps(model_config, sort_keys=True),
                "mnistlab": __version__, "torch": torch.__version__}
    return safetensors_bytes(_state_tensors(model), metadata=metadata)


def save_weights(path: str | os.PathLike[str], model: nn.Module, model_name: str,
                 model_config: dict[str, Any]) -> None:
    atomic.write_bytes(path, weights_bytes(model, model_name, model_config))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; UserError if missing or damaged."""
    if not path.is_file():
        raise UserError(f"{path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise UserError(f"{path} is damaged or not a safetensors file ({_one_line(exc)}); "
                        "re-run the training that wrote it") from None
    return tensors, metadata


def load_model(run: str | os.PathLike[str]) -> nn.Module:
    """The trained model of a run folder (or of a model.safetensors file), in eval mode.

    Raises UserError when the folder is not a run, the file is damaged, or the weights do not
    fit the architecture that its metadata names.
    """
    from mnistlab.models import build_model

    path = Path(run).expanduser()
    if path.is_file():
        weights, config_model = path, None
    else:
        run_dir = resolve_run(run)
        weights, config_model = run_dir / WEIGHTS, read_config(run_dir).get("model")
    tensors, metadata = read_safetensors(weights)
    if metadata.get("format") != FORMAT or "model" not in metadata:
        raise UserError(f"{weights} is not an mnistlab model file (its metadata lacks "
                        f"format={FORMAT!r}); expected the model.safetensors of an mnistlab run")
    name = metadata["model"]
    if config_model is not None and config_model != name:
        raise UserError(f"{weights} holds a {name!r} model but the run's config.json says "
                        f"{config_model!r}; the folder mixes two runs")
    try:
        model_config = json.loads(metadata.get("model_config", "{}"))
    except json.JSONDecodeError:
        raise UserError(f"{weights} has an unreadable model_config in its metadata") from None
    model = build_model(name, **model_config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{weights} does not hold weights of model {name!r} "
                        f"({_one_line(exc)}); the file belongs to another architecture") from None
    return model.eval()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


# --- history and metrics ---------------------------------------------------------------------

def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    run_dir = Path(run_dir)
    atomic.write_json(run_dir / HISTORY_JSON, rows)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic.write_text(run_dir / HISTORY_CSV, buf.getvalue())


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_JSON
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: the run has no finished epoch yet") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable history file ({exc})") from None
    if not isinstance(rows, list):
        raise UserError(f"{path} is not an mnistlab history file (expected a JSON list)")
    return rows


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    atomic.write_json(Path(run_dir) / METRICS, metrics)


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """metrics.json of a finished run (test_accuracy, test_loss, train_accuracy, ...)."""
    return _read_json(Path(run_dir) / METRICS, "metrics")


def save_run(run_dir: str | os.PathLike[str], *, model: nn.Module, model_name: str,
             model_config: dict[str, Any], config: dict[str, Any] | None = None,
             history: list[dict[str, Any]] | None = None,
             metrics: dict[str, Any] | None = None) -> Path:
    """Write a whole run folder (the parts given); returns the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_config(run_dir, config)
    save_weights(run_dir / WEIGHTS, model, model_name, model_config)
    if history is not None:
        write_history(run_dir, history)
    if metrics is not None:
        write_metrics(run_dir, metrics)
    return run_dir


def list_runs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Finished runs (with metrics.json and model.safetensors) under ``root``, by name."""
    base = Path(root) if root is not None else runs_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir()
                  if (p / METRICS).is_file() and (p / WEIGHTS).is_file())


def find_best_run(root: str | os.PathLike[str] | None = None, *,
                  dataset: str | None = "mnist") -> Path | None:
    """The finished run with the highest test accuracy (on ``dataset``; None: any), or None.

    Looks under ``root``, or by default under every folder of ``paths.run_roots()``.
    """
    roots = [Path(root)] if root is not None else run_roots()
    best: tuple[float, Path] | None = None
    for path in (p for base in roots for p in list_runs(base)):
        try:
            metrics = read_metrics(path)
        except UserError:
            continue  # a damaged run is not a candidate
        acc = metrics.get("test_accuracy")
        if not isinstance(acc, int | float) or not math.isfinite(acc):
            continue
        if dataset is not None and metrics.get("dataset", "mnist") != dataset:
            continue
        if best is None or acc > best[0]:
            best = (float(acc), path)
    return best[1] if best else None


def best_run(dataset: str | None = "mnist") -> Path:
    """``find_best_run`` for commands given no RUN: a clear UserError when there is none."""
    best = find_best_run(dataset=dataset)
    if best is None:
        where = " or ".join(str(p) for p in run_roots())
        raise UserError(f"no trained run found under {where}; train one first, e.g. "
                        "`mnistlab train cnn` (about a minute), or name a run folder")
    return best


# --- checkpoints (exact resume) --------------------------------------------------------------

@dataclass
class Checkpoint:
    """What resumes a run exactly: state after ``epoch`` finished epochs."""

    epoch: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any] | None
    rng: dict[str, torch.Tensor]                   # generator name -> torch.ByteTensor state
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> None:
    """One atomic safetensors file: tensors by prefix, everything else as JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in ckpt.model_state.items():
        tensors[f"model.{k}"] = v.detach().contiguous().clone()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, state in ckpt.optimizer_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().contiguous().clone()
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
        "history": json.dumps(ckpt.history),
        "extra": json.dumps(ckpt.extra),
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
                          history=json.loads(metadata["history"]),
                          extra=json.loads(metadata.get("extra", "{}")))
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path} is an incomplete checkpoint ({_one_line(exc)})") from None
