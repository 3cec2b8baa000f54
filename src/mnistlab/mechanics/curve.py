"""The loss curve of a training loop: exponential smoothing and the figure.

``plot_loss_curve`` is a pure function of its arrays (no pyplot state, Agg canvas), so the
report can call it on a finished run's ``loss.csv`` and the loop can call it every few seconds
while it runs; the PNG is replaced atomically, so a viewer never reads half a file.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnistlab.atomic import write_bytes, write_text
from mnistlab.errors import UserError

SMOOTHING = 0.95  # the reference lab's factor: each point keeps 95% of the previous average


def ema(values: Sequence[float] | np.ndarray, factor: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average, s[0] = v[0], s[t] = factor * s[t-1] + (1 - factor) * v[t].

    With factor 0.95 a point averages roughly the last 1 / (1 - 0.95) = 20 iterations.
    """
    if not 0.0 <= factor < 1.0:
        raise ValueError(f"smoothing factor must be in [0, 1), got {factor}")
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    running = values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        running = factor * running + (1.0 - factor) * v
        out[i] = running
    return out


def plot_loss_curve(steps: Sequence[int] | np.ndarray, losses: Sequence[float] | np.ndarray,
                    smoothed: Sequence[float] | np.ndarray, path: str | os.PathLike[str], *,
                    title: str = "Training loss", smoothing: float = SMOOTHING,
                    total_steps: int | None = None, size: tuple[float, float] = (8.0, 4.5),
                    dpi: int = 100) -> Path:
    """Write a PNG (``size`` inches at ``dpi``: 800 x 450 pixels by default) of the raw loss,
    faint, and its smoothed curve, bold, on a log-scale y axis against the iteration number.

    ``total_steps`` fixes the x axis to the whole planned run, so a figure drawn mid-run shows
    how far along it is."""
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.6, label="loss per batch")
    ax.plot(steps, smoothed, color="#0b3d91", linewidth=2.2,
            label=f"smoothed (EMA, factor {smoothing:g})")
    ax.set_yscale("log")
    # Plain numbers (0.1, 0.5, 2) rather than 10^-1 or 2 x 10^0: losses are read, not decades.
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False,
                                                     minor_thresholds=(1.2, 0.5)))
    if total_steps:
        ax.set_xlim(0, total_steps)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_bytes(path, buf.getvalue())
    return Path(path)


def write_loss_csv(path: str | os.PathLike[str], steps: Sequence[int], losses: Sequence[float],
                   smoothed: Sequence[float]) -> None:
    """``step,loss,smoothed``, one row per iteration, written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "loss", "smoothed"])
    for s, v, m in zip(steps, losses, smoothed, strict=True):
        writer.writerow([int(s), f"{v:.6g}", f"{m:.6g}"])
    write_text(path, buf.getvalue())


def read_loss_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, losses, smoothed)`` from a ``loss.csv`` written by ``write_loss_csv``."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        steps = np.array([int(r["step"]) for r in rows])
        losses = np.array([float(r["loss"]) for r in rows])
        smoothed = np.array([float(r["smoothed"]) for r in rows])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot read the loss table {path}: {exc}; expected the loss.csv "
                        "(step,loss,smoothed) that `mnistlab loop` writes") from None
    return steps, losses, smoothed
