"""Where mnistlab keeps its data cache and its runs."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data cache: ``$MNISTLAB_DATA_DIR``, else ``~/.cache/mnistlab``."""
    env = os.environ.get("MNISTLAB_DATA_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mnistlab"


def cache_dir() -> Path:
    """Where machine-local measurements are kept (the engine probe): ``$MNISTLAB_CACHE_DIR``,
    else the data cache. Beside the data, not in the runs folder: a probe's timings describe
    this machine and are worthless on another, while runs are copied between machines; and
    its own variable lets tests keep it apart from a data cache they share."""
    env = os.environ.get("MNISTLAB_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else data_dir()


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
