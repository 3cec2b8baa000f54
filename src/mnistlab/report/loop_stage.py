"""The report's custom-loop stage (figure 6): ``mnistlab.mechanics.loop.run_loop`` (the seed
CNN trained by the explicit loop, saved as an ordinary run), drawn by
``mnistlab.mechanics.curve.plot_loss_curve``.

The reference lab's recipe (LoopConfig's defaults): batch 12, plain SGD at 1e-2, one pass over
the 60,000 training images = 5,000 iterations; exponential smoothing 0.95, log-scale loss.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mnistlab import console, runs
from mnistlab.errors import UserError
from mnistlab.mechanics.curve import ema, plot_loss_curve, read_loss_csv
from mnistlab.mechanics.loop import LOSS_CSV, LoopConfig, LoopStart, run_loop
from mnistlab.report.schema import LoopStudy

WINDOW = 100        # iterations per window when counting how often the smoothed loss fell


def run(*, steps: int = 0, limit: int = 0, seed: int = 0, threads: int = 0,
        reuse: bool = False, device: str = "cpu", run_dir: Path,
        figure_path: Path) -> LoopStudy:
    """Train into ``run_dir``, draw figure 6 at ``figure_path``, return the loop's numbers.

    ``steps`` 0: one full pass over the (possibly ``limit``-ed) training images; ``threads`` 0:
    the loop's own default (one thread: batches of 12 give threads little to share).
    ``reuse``: take a finished loop run already in ``run_dir`` with the same settings.
    """
    config = _config(steps=steps, limit=limit, seed=seed, threads=threads, device=device)
    bar: tqdm | None = None

    def on_start(info: LoopStart) -> None:
        nonlocal bar
        bar = console.progress(total=info.steps, desc="custom loop", unit="step")

    def on_step(step: int, loss: float, smoothed: float) -> None:
        assert bar is not None  # run_loop calls on_start first
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(smoothed_loss=f"{smoothed:.4f}", refresh=False)

    previous = _finished(Path(run_dir), config) if reuse else None
    if previous is not None:
        m, losses = previous
        console.say(f"reusing {run_dir}")
    else:
        if Path(run_dir).exists():  # a previous report's loop run: re-run from scratch
            shutil.rmtree(run_dir)
        try:
            result = run_loop(config, run_dir, on_start=on_start, on_step=on_step)
        finally:
            if bar is not None:
                bar.close()
        m, losses = result.metrics, result.losses
    smoothed = ema(losses, config.smoothing)
    iterations = np.arange(1, len(losses) + 1)
    plot_loss_curve(iterations, losses, smoothed, figure_path,
                    title=f"Explicit training loop: seed CNN, SGD {config.lr:g}, batch "
                          f"{config.batch_size}, {len(losses):,} iterations",
                    smoothing=config.smoothing)
    windows = smoothed[::WINDOW]
    return LoopStudy(
        steps=m.steps, planned_steps=m.train_images // config.batch_size,
        batch_size=m.batch_size, lr=m.lr, optimizer="plain SGD",
        smoothing=config.smoothing, seed=seed, train_images=m.train_images,
        threads=m.threads, seconds=m.train_seconds,
        loss_first=m.loss_first, loss_last=m.loss_last,
        smoothed_start=m.smoothed_first, smoothed_end=m.smoothed_last,
        decreasing_share=float(np.mean(np.diff(windows) < 0)) if len(windows) > 1 else None,
        test_accuracy=m.test_accuracy, test_loss=m.test_loss,
        run_dir=Path(run_dir), run_dir_rel=f"runs/{Path(run_dir).name}",
        figure=Path(figure_path),
    )


def _config(*, steps: int, limit: int, seed: int, threads: int, device: str) -> LoopConfig:
    config = LoopConfig(steps=steps, limit=limit, seed=seed, device=device)
    if threads:
        config.threads = threads
    return config


def reusable(run_dir: Path, *, steps: int = 0, limit: int = 0, seed: int = 0,
             threads: int = 0, device: str = "cpu") -> bool:
    """Whether ``run`` with ``reuse`` would take the loop run in ``run_dir`` as it is."""
    return _finished(run_dir, _config(steps=steps, limit=limit, seed=seed, threads=threads,
                                      device=device)) is not None


def _finished(run_dir: Path, config: LoopConfig) -> tuple[runs.RunMetrics, list[float]] | None:
    """(metrics, losses) of a finished loop run in ``run_dir`` made with ``config``'s settings
    (steps, batch, learning rate, seed, data), or None."""
    try:
        metrics = runs.read_metrics(run_dir)
        saved = runs.read_config(run_dir).loop
        _, losses, _ = read_loss_csv(run_dir / LOSS_CSV)
    except (UserError, OSError, KeyError, ValueError):
        return None
    if saved is None or metrics.steps is None:              # not a loop run
        return None
    wanted = {"batch_size": config.batch_size, "lr": config.lr, "seed": config.seed,
              "limit": config.limit, "dataset": config.dataset, "model": config.model}
    if any(getattr(saved, k) != v for k, v in wanted.items()):
        return None
    if (config.steps and metrics.steps != config.steps) or len(losses) != metrics.steps:
        return None
    return metrics, losses.tolist()
