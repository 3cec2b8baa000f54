"""A run folder's files: their names, creating and finding the folder, its JSON files.

Every reader turns a missing, foreign or damaged file into a ``UserError`` (one line, exit 2).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mnistlab import atomic
from mnistlab.errors import UserError
from mnistlab.paths import runs_dir
from mnistlab.runs.schema import HistoryRow, Resumption, RunConfig, RunMetrics
from mnistlab.runs.typed import JSONObject, JSONValue, SchemaError

T = TypeVar("T")

CONFIG = "config.json"


WEIGHTS = "model.safetensors"


CHECKPOINT = "checkpoint.safetensors"


HISTORY_CSV = "history.csv"


HISTORY_JSON = "history.json"


METRICS = "metrics.json"


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


def locate(run: str | os.PathLike[str]) -> Path:
    """Where ``run`` points: the path itself when it exists (or is absolute), else the name
    under the runs folder when that exists, else the path as given. Checks nothing more."""
    path = Path(run).expanduser()
    if not path.exists() and not path.is_absolute():
        candidate = runs_dir() / path
        if candidate.exists():
            return candidate
    return path


def resolve_run(run: str | os.PathLike[str]) -> Path:
    """A run folder from a path, or from a name under the runs folder; UserError if not a run."""
    path = locate(run)
    if not path.exists():
        raise UserError(f"run {str(run)!r} not found: expected a run folder (as written by "
                        f"`mnistlab train`) or a name under {runs_dir()}")
    if path.is_file():
        raise UserError(f"{path} is a file; expected a run folder holding {CONFIG} and {WEIGHTS}")
    missing = [name for name in (CONFIG, WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path} is not an mnistlab run: it lacks {' and '.join(missing)}; "
                        "train one with `mnistlab train MODEL`")
    return path.resolve()


def resolve_resumable(run: str | os.PathLike[str]) -> Path:
    """The folder of a started run (config.json present; weights may not be, yet)."""
    path = Path(run).expanduser()
    if not path.is_dir():
        raise UserError(f"cannot resume {str(run)!r}: no such run folder; to start a run "
                        "there, leave out --resume")
    if not (path / CONFIG).is_file():
        raise UserError(f"cannot resume {path}: it is not an mnistlab run (no {CONFIG}); "
                        "choose the folder of a run, or a new one without --resume")
    return path.resolve()


@dataclass(frozen=True)
class RunProgress:
    """How far a training run got: finished once metrics.json is written."""

    run_dir: Path
    model: str
    finished: bool
    epochs_done: int                 # rows of history.json: epochs whose results were saved
    epochs_planned: int

    def resume_command(self) -> str:
        return shlex.join(["mnistlab", "train", self.model, "--out", str(self.run_dir),
                           "--resume"])

    def note(self) -> str:
        """One line for a command that uses an unfinished run."""
        return (f"{self.run_dir} is unfinished ({self.epochs_done} of {self.epochs_planned} "
                f"epochs); resume with `{self.resume_command()}`")


def run_progress(run_dir: str | os.PathLike[str]) -> RunProgress | None:
    """How far the ``mnistlab train`` run in ``run_dir`` got; None for a run that has no
    training config to resume with (a ``loop`` run, weights saved by hand)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.kind != "train" or config.train is None:
        return None
    try:
        done = len(read_history(run_dir))
    except UserError:                # no epoch saved yet, or a damaged history
        done = 0
    return RunProgress(run_dir=run_dir, model=config.model,
                       finished=(run_dir / METRICS).is_file(), epochs_done=done,
                       epochs_planned=config.train.epochs)


def remove_partial_writes(run_dir: Path) -> None:
    """Delete temp files that a killed process left mid-write (atomic writes' ``.NAME.*.tmp``)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic.write_json(Path(run_dir) / CONFIG, config.to_dict())


def record_resumption(run_dir: Path, resumed: Resumption) -> None:
    """Add ``resumed`` to config.json's ``resumed`` list, leaving every other key as it was
    written (an older run's file keeps its own shape: only the list is new)."""
    path = Path(run_dir) / CONFIG
    data = read_json_object(path, "config")
    earlier = data.get("resumed")
    data["resumed"] = [*(earlier if isinstance(earlier, list) else []), resumed.to_dict()]
    atomic.write_json(path, data)


def read_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    """config.json of a run (any mnistlab version's); UserError if missing or damaged."""
    path = Path(run_dir) / CONFIG
    return _typed(path, "config", RunConfig.from_dict, _read_json(path, "config"))


def _read_json(path: Path, what: str, missing: str = "") -> JSONValue:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found: " + (missing or f"the run has no {what} file "
                        "(was it interrupted before finishing?)")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # a calibration is fitted again in seconds; the rest only its training writes
        fix = ("fit it again with `mnistlab calibrate RUN`" if what == "calibration" else
               "re-run the training that wrote it")
        raise UserError(f"{path} is not a readable {what} file ({exc}); {fix}") from None
    return data


def _typed(path: Path, what: str, parse: Callable[[JSONValue], T], data: JSONValue) -> T:
    try:
        return parse(data)
    except SchemaError as exc:
        raise UserError(f"{path} is not an mnistlab {what} file ({exc})") from None


def write_history(run_dir: Path, rows: list[HistoryRow]) -> None:
    run_dir = Path(run_dir)
    dicts = [row.to_dict() for row in rows]
    atomic.write_json(run_dir / HISTORY_JSON, dicts)
    buf = io.StringIO()
    if dicts:
        writer = csv.DictWriter(buf, fieldnames=list(dicts[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(dicts)
    atomic.write_text(run_dir / HISTORY_CSV, buf.getvalue())


def read_history(run_dir: str | os.PathLike[str]) -> list[HistoryRow]:
    path = Path(run_dir) / HISTORY_JSON
    rows = _read_json(path, "history", "the run has no finished epoch yet")
    if not isinstance(rows, list):
        raise UserError(f"{path} is not an mnistlab history file (expected a JSON list)")
    return [_typed(path, "history", HistoryRow.from_dict, row) for row in rows]


def write_metrics(run_dir: Path, metrics: RunMetrics) -> None:
    atomic.write_json(Path(run_dir) / METRICS, metrics.to_dict())


def read_metrics(run_dir: str | os.PathLike[str]) -> RunMetrics:
    """metrics.json of a finished run (test_accuracy, test_loss, train_accuracy, ...)."""
    path = Path(run_dir) / METRICS
    return _typed(path, "metrics", RunMetrics.from_dict, _read_json(path, "metrics"))


def read_json_object(path: Path, what: str) -> JSONObject:
    """A JSON object file of a run (``what`` names it in errors); UserError if missing or bad."""
    data = _read_json(path, what)
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an mnistlab {what} file (expected a JSON object)")
    return data
