"""Run folders: everything one training run leaves behind, written atomically, never pickled.

    runs/<name>/config.json              what repeats it: training config, versions, CPU, threads
                model.safetensors        weights; metadata: format, model name, model config (JSON),
                                         sha256 of the tensors (checked on load)
                checkpoint.safetensors   after each epoch: weights, optimizer state, RNG states;
                                         metadata: epoch, history, optimizer/scheduler settings,
                                         sha256 of the tensors (checked on resume)
                history.csv / .json      one row per finished epoch
                metrics.json             final figures (present only once the run has finished)

Modules: ``schema`` (the typed content of config.json, metrics.json and history), ``typed``
(JSON values, checked fields), ``files`` (names, folders, JSON files), ``weights``,
``checkpoint``, ``environment``, ``find``. Every reader turns a missing, foreign or damaged
file into a ``UserError`` (one line, exit 2).
"""

from mnistlab.runs.checkpoint import CHECKPOINT_FORMAT, Checkpoint, load_checkpoint, save_checkpoint
from mnistlab.runs.environment import environment
from mnistlab.runs.files import (
    CHECKPOINT,
    CONFIG,
    HISTORY_CSV,
    HISTORY_JSON,
    METRICS,
    WEIGHTS,
    RunProgress,
    new_run_dir,
    read_config,
    read_history,
    read_metrics,
    record_resumption,
    remove_partial_writes,
    resolve_resumable,
    resolve_run,
    run_progress,
    write_config,
    write_history,
    write_metrics,
)
from mnistlab.runs.find import PICTURE_PRESET, best_run, find_best_run, list_runs
from mnistlab.runs.schema import (
    EngineChoice,
    Environment,
    HistoryRow,
    LoopSettings,
    Resumption,
    RunConfig,
    RunMetrics,
)
from mnistlab.runs.typed import JSONObject, JSONValue, SchemaError
from mnistlab.runs.weights import (
    FORMAT,
    UnverifiedWeightsWarning,
    load_model,
    read_safetensors,
    save_run,
    save_weights,
    weights_bytes,
)

__all__ = [
    "CHECKPOINT", "CHECKPOINT_FORMAT", "CONFIG", "FORMAT", "HISTORY_CSV", "HISTORY_JSON",
    "METRICS", "PICTURE_PRESET", "WEIGHTS", "Checkpoint", "EngineChoice", "Environment",
    "HistoryRow", "JSONObject", "JSONValue", "LoopSettings", "Resumption", "RunConfig",
    "RunMetrics",
    "RunProgress", "SchemaError", "UnverifiedWeightsWarning", "best_run", "environment",
    "find_best_run", "list_runs",
    "load_checkpoint", "load_model", "new_run_dir", "read_config", "read_history",
    "read_metrics", "read_safetensors", "record_resumption", "remove_partial_writes",
    "resolve_resumable", "resolve_run", "run_progress", "save_checkpoint", "save_run",
    "save_weights", "weights_bytes", "write_config", "write_history", "write_metrics",
]
