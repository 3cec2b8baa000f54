"""Finding finished runs: all of them under a folder, and the best one for commands given no
RUN (predict, serve, evaluate best)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from mnistlab.errors import UserError
from mnistlab.paths import run_roots, runs_dir
from mnistlab.runs.files import METRICS, WEIGHTS, read_metrics


def list_runs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Finished runs (with metrics.json and model.safetensors) under ``root``, by name."""
    base = Path(root) if root is not None else runs_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir()
                  if (p / METRICS).is_file() and (p / WEIGHTS).is_file())


def find_best_run(root: str | os.PathLike[str] | None = None, *,
                  dataset: str | None = "mnist", preset: str | None = None) -> Path | None:
    """The finished run with the highest test accuracy (on ``dataset``; None: any; of
    ``preset`` only, when given), or None.

    Looks under ``root``, or by default under every folder of ``paths.run_roots()``.
    """
    roots = [Path(root)] if root is not None else run_roots()
    best: tuple[float, Path] | None = None
    for path in (p for base in roots for p in list_runs(base)):
        try:
            metrics = read_metrics(path)
        except UserError:
            continue  # a damaged run is not a candidate
        acc = metrics.test_accuracy
        if acc is None or not math.isfinite(acc):
            continue
        if dataset is not None and metrics.dataset != dataset:
            continue
        if preset is not None and metrics.preset != preset:
            continue
        if best is None or acc > best[0]:
            best = (float(acc), path)
    return best[1] if best else None


# Trained for the pictures people make (augmentation beyond MNIST's, calibrated confidence):
# the model predict and serve answer with, given no RUN, whenever one exists.
PICTURE_PRESET = "robust"


def best_run(dataset: str | None = "mnist", *, for_pictures: bool = False) -> Path:
    """``find_best_run`` for commands given no RUN: a clear UserError when there is none.

    ``for_pictures`` (predict, serve) prefers the best ``robust`` run over any other."""
    best = find_best_run(dataset=dataset, preset=PICTURE_PRESET) if for_pictures else None
    best = best or find_best_run(dataset=dataset)
    if best is None:
        where = " or ".join(str(p) for p in run_roots())
        raise UserError(f"no trained run found under {where}; train one first, e.g. "
                        "`mnistlab train cnn` (about a minute), or name a run folder")
    return best
