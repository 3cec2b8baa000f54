"""model.safetensors: a run's weights with the model's name and config as metadata, never
pickled; ``load_model`` rebuilds the architecture its metadata names."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from mnistlab import __version__, atomic
from mnistlab.errors import Note, UserError
from mnistlab.models import build_model
from mnistlab.runs.files import (
    WEIGHTS,
    read_config,
    resolve_run,
    write_config,
    write_history,
    write_metrics,
)
from mnistlab.runs.schema import HistoryRow, RunConfig, RunMetrics
from mnistlab.runs.typed import JSONObject

FORMAT = "mnistlab-model-1"          # metadata["format"] of model.safetensors
SHA256 = "sha256"                    # metadata key: tensors_sha256 of the file's tensors


class UnverifiedWeightsWarning(Note):
    """A weights or checkpoint file written before mnistlab recorded a hash of its tensors: it
    loads, but damage to its tensor bytes cannot be detected. The CLI prints it as a note."""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes, in sorted name order.

    Over the tensors rather than the file's bytes: it is the same whatever order or alignment
    the safetensors writer chooses, and it can be computed before the file exists.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        # bytes of any dtype (bf16 included) through a uint8 view; reshape handles 0-dim
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_sha256(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                 fix: str) -> bool:
    """UserError if the recorded hash does not match the tensors; False (and an
    UnverifiedWeightsWarning) when the file records none, True when it matched."""
    recorded = metadata.get(SHA256)
    if recorded is None:
        warnings.warn(f"{path} carries no hash of its tensors (written before mnistlab "
                      "recorded one), so damage to it cannot be detected",
                      UnverifiedWeightsWarning, stacklevel=3)
        return False
    if tensors_sha256(tensors) != recorded:
        raise UserError(f"{path} is damaged: its tensors do not match the SHA-256 recorded "
                        f"when it was written; {fix}")
    return True


def _state_tensors(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    # safetensors needs contiguous, unshared tensors; channels_last weights are not contiguous.
    # .cpu(): a model trained on a GPU is saved from the CPU side (no copy for a CPU model).
    return {prefix + k: v.detach().cpu().contiguous().clone()
            for k, v in model.state_dict().items()}


def weights_bytes(model: nn.Module, model_name: str, model_config: JSONObject) -> bytes:
    """model.safetensors as bytes: the state dict, what is needed to rebuild the model, and a
    SHA-256 of the tensors that ``load_model`` checks."""
    tensors = _state_tensors(model)
    metadata = {"format": FORMAT, "model": model_name,
                "model_config": json.dumps(model_config, sort_keys=True),
                "mnistlab": __version__, "torch": torch.__version__,
                SHA256: tensors_sha256(tensors)}
    return safetensors_bytes(tensors, metadata=metadata)


def save_weights(path: str | os.PathLike[str], model: nn.Module, model_name: str,
                 model_config: JSONObject) -> None:
    atomic.write_bytes(path, weights_bytes(model, model_name, model_config))


def read_safetensors(path: Path, fix: str = "re-run the training that wrote it"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; UserError if missing or damaged
    (``fix``: what the message tells the user to do)."""
    if not path.is_file():
        raise UserError(f"{path} not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:   # then .to(device)
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise UserError(f"{path} is damaged or not a safetensors file ({one_line(exc)}); "
                        f"{fix}") from None
    return tensors, metadata


def load_model(run: str | os.PathLike[str]) -> nn.Module:
    """The trained model of a run folder (or of a model.safetensors file), in eval mode.

    Raises UserError when the folder is not a run, the file is damaged (its tensors do not
    match the SHA-256 in its metadata), or the weights do not fit the architecture that its
    metadata names. A file written before the hash was recorded loads with an
    ``UnverifiedWeightsWarning``.
    """
    path = Path(run).expanduser()
    if path.is_file():
        weights, config_model = path, None
    else:
        run_dir = resolve_run(run)
        weights, config_model = run_dir / WEIGHTS, read_config(run_dir).model
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
    check_sha256(weights, tensors, metadata,
                 "re-train the run, or restore the file from a copy")
    model = build_model(name, **model_config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{weights} does not hold weights of model {name!r} "
                        f"({one_line(exc)}); the file belongs to another architecture") from None
    return model.eval()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def save_run(run_dir: str | os.PathLike[str], *, model: nn.Module, model_name: str,
             model_config: JSONObject, config: RunConfig | None = None,
             history: list[HistoryRow] | None = None,
             metrics: RunMetrics | None = None) -> Path:
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
