"""The runs the lab shows: every run folder under the run roots, finished or still training.

    catalog = find_runs()                  # under paths.run_roots(): runs/ and report/runs
    picks = default_models(catalog)        # best FC, best CNN, and the robust (or best) run;
                                           # served=: the served run first

A run is *finished* once metrics.json is written; before that, a folder with config.json is
*training* while its history or weights changed in the last ``LIVE_SECONDS``, else *stopped*
(interrupted; `mnistlab train --resume` continues it). A saved ensemble (a folder with
ensemble.json, `mnistlab evaluate --ensemble ... --save DIR`) is listed too, as model and
family "ensemble", finished, with the test accuracy it was saved with. Ids are folder names; a
name found again under a later root gets ``@<root label>`` so every id is unique and stable
across listings.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.inference.ensemble import ENSEMBLE, read_ensemble
from mnistlab.models import build_model
from mnistlab.paths import report_dir, run_roots

LIVE_SECONDS = 600.0    # a run whose files changed this recently is taken to be training


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    root: str                       # "runs", "report" or "other": which folder it was found in
    path: Path
    model: str
    family: str                     # "fc" (no convolution), "cnn" or "ensemble"
    preset: str | None
    dataset: str
    status: str                     # "finished" | "training" | "stopped"
    test_accuracy: float | None
    epochs_done: int
    epochs_planned: int | None
    train_seconds: float | None
    parameters: int | None
    created: str | None             # ISO 8601 UTC, from config.json (else the folder's mtime)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["path"]  # the API names runs by id, never by a path on the server
        return out


def _root_label(base: Path) -> str:
    if base == report_dir() / "runs":
        return "report"
    return "runs" if base == run_roots()[0] else "other"


@functools.cache
def _family(model: str, config_json: str) -> str:
    """'cnn' when the architecture has a convolution, else 'fc' (built once per config)."""
    try:
        net = build_model(model, **json.loads(config_json))
    except (UserError, TypeError, ValueError):
        return "fc" if model == "fc" else "cnn"
    return "cnn" if any(isinstance(m, nn.Conv2d) for m in net.modules()) else "fc"


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _history_or_empty(path: Path) -> list[dict[str, Any]]:
    try:
        return [row.to_dict() for row in runs.read_history(path)]
    except UserError:
        return []


def _status(path: Path, finished: bool) -> str:
    if finished:
        return "finished"
    stamps = [f.stat().st_mtime for f in (path / runs.HISTORY_JSON, path / runs.WEIGHTS,
                                          path / runs.CHECKPOINT, path / runs.CONFIG)
              if f.exists()]
    return "training" if stamps and time.time() - max(stamps) < LIVE_SECONDS else "stopped"


def _created(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))


def read_ensemble_folder(path: Path, run_id: str, root: str) -> RunInfo | None:
    """The RunInfo of a saved ensemble, or None when ensemble.json does not read as one. Its
    members are checked when it is loaded, not here: a listing stays cheap."""
    try:
        saved = read_ensemble(path)
    except UserError:
        return None
    return RunInfo(
        id=run_id, name=path.name, root=root, path=path, model="ensemble", family="ensemble",
        preset=None, dataset=saved.dataset, status="finished",
        test_accuracy=_number(saved.test_accuracy), epochs_done=0, epochs_planned=None,
        train_seconds=None, parameters=None, created=_created(path / ENSEMBLE))


def read_run(path: Path, run_id: str, root: str) -> RunInfo | None:
    """The RunInfo of one folder, or None when it is not a run (no readable config.json) nor
    a saved ensemble."""
    if not (path / runs.CONFIG).is_file() and (path / ENSEMBLE).is_file():
        return read_ensemble_folder(path, run_id, root)
    try:
        config = runs.read_config(path).to_dict()     # the page shows the files' own keys
    except UserError:
        return None
    finished = (path / runs.METRICS).is_file() and (path / runs.WEIGHTS).is_file()
    try:
        metrics = runs.read_metrics(path).to_dict() if finished else {}
    except UserError:
        metrics, finished = {}, False
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    history = _history_or_empty(path)
    model = str(metrics.get("model") or config.get("model") or "?")
    model_config = config.get("model_config") if isinstance(config.get("model_config"),
                                                            dict) else {}
    created = config.get("created")
    if not isinstance(created, str):
        created = _created(path)
    seconds = _number(metrics.get("train_seconds"))
    if seconds is None and history:
        seconds = sum(_number(r.get("seconds")) or 0.0 for r in history)
    planned = train.get("epochs", config.get("epochs"))
    params = metrics.get("parameters", config.get("parameters"))
    return RunInfo(
        id=run_id, name=path.name, root=root, path=path, model=model,
        family=_family(model, json.dumps(model_config, sort_keys=True)),
        preset=metrics.get("preset") or train.get("preset"),
        dataset=str(metrics.get("dataset") or train.get("dataset") or "mnist"),
        status=_status(path, finished), test_accuracy=_number(metrics.get("test_accuracy")),
        epochs_done=len(history) or int(_number(metrics.get("epochs")) or 0),
        epochs_planned=int(planned) if isinstance(planned, int) else None,
        train_seconds=round(seconds, 3) if seconds is not None else None,
        parameters=int(params) if isinstance(params, int) else None, created=created)


def find_runs(roots: list[Path] | None = None, extra: list[Path] = ()) -> list[RunInfo]:
    """Every run under ``roots`` (default ``paths.run_roots()``), then ``extra`` folders (the
    served run, wherever it lives), each once, newest first within a root: by ``created``, as
    the page shows it, its name breaking ties (folder names carry a UTC time, but names given
    with --out do not). By the file's time, a run copied in from elsewhere was listed above runs
    made after it."""
    found: list[RunInfo] = []
    seen_paths: set[Path] = set()
    seen_ids: set[str] = set()

    def read_all(folders: list[Path], label: str) -> list[RunInfo]:
        infos = []
        for path in folders:
            resolved = path.resolve()
            if resolved in seen_paths:
                continue
            run_id = path.name if path.name not in seen_ids else f"{path.name}@{label}"
            info = read_run(resolved, run_id, label)
            if info is None:
                continue
            seen_paths.add(resolved)
            seen_ids.add(run_id)
            infos.append(info)
        return infos

    for base in (roots if roots is not None else run_roots()):
        if base.is_dir():
            subdirs = [p for p in base.iterdir()
                       if p.is_dir() and ((p / runs.CONFIG).is_file() or (p / ENSEMBLE).is_file())]
            found += sorted(read_all(subdirs, _root_label(base)),
                            key=lambda r: (r.created or "", r.name), reverse=True)
    return found + read_all([Path(p) for p in extra], "other")


def by_id(catalog: list[RunInfo], run_id: str) -> RunInfo:
    for info in catalog:
        if info.id == run_id:
            return info
    raise KeyError(run_id)


def _best(candidates: list[RunInfo]) -> RunInfo | None:
    scored = [r for r in candidates if r.test_accuracy is not None]
    return max(scored, key=lambda r: r.test_accuracy or 0.0) if scored else None


def default_models(catalog: list[RunInfo], dataset: str = "mnist",
                   served: Path | None = None) -> list[RunInfo]:
    """What the compare view shows first: the served run (``served``: the folder `mnistlab
    serve RUN` answers with, when it is finished), the best finished FC and CNN on ``dataset``,
    and the best 'robust' run, or failing that the best run of all, each once."""
    done = [r for r in catalog if r.status == "finished" and r.dataset == dataset]
    target = served.resolve() if served is not None else None
    own = [r for r in catalog if r.status == "finished" and r.path == target]
    picks = [*own[:1], _best([r for r in done if r.family == "fc"]),
             _best([r for r in done if r.family == "cnn"]),
             _best([r for r in done if r.preset == "robust"]) or _best(done)]
    out: list[RunInfo] = []
    for r in picks:
        if r is not None and r not in out:
            out.append(r)
    return out


def history(info: RunInfo) -> list[dict[str, Any]]:
    """The run's epochs so far (history.json, written atomically after each epoch)."""
    return _history_or_empty(info.path)


def _weight_files(info: RunInfo) -> list[Path]:
    if info.family != "ensemble":
        return [info.path / runs.WEIGHTS]
    try:
        members = read_ensemble(info.path).members
    except UserError:
        members = []
    return [info.path / ENSEMBLE] + [Path(m.run_dir) / runs.WEIGHTS for m in members]


def weights_stamp(info: RunInfo) -> int:
    """Changes whenever the weights file is rewritten (after each epoch), or for an ensemble
    ensemble.json or a member's weights: a cache key."""
    try:
        return hash(tuple(os.stat(f).st_mtime_ns for f in _weight_files(info)))
    except FileNotFoundError:
        return 0
