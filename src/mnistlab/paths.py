"""Where mnistlab keeps its data cache and its runs."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data cache: ``$MNISTLAB_DATA_DIR``, else ``~/.cache/mnistlab``."""
    env = os.environ.get("MNISTLAB_DATA_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mnistlab"


def runs_dir() -> Path:
    """Where new runs go: ``$MNISTLAB_RUNS_DIR``, else ``runs/`` in the working folder."""
    env = os.environ.get("MNISTLAB_RUNS_DIR")
    return Path(env or "runs").expanduser().resolve()


def report_dir() -> Path:
    """Where ``mnistlab report`` writes by default: ``$MNISTLAB_REPORT_DIR``, else ``report/`` in
    the working folder."""
    env = os.environ.get("MNISTLAB_REPORT_DIR")
    return Path(env or "report").expanduser().resolve()


def run_roots() -> list[Path]:
    """Where finished runs are looked for by name-less commands (predict, serve, evaluate best):
    the runs folder, then the report's, so the models ``make run`` trained are found too."""
    return [runs_dir(), report_dir() / "runs"]
