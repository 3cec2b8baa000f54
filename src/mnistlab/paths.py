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
