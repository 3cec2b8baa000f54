"""The main job: train the seed's two models over several seeds, run the custom loop, measure,
draw, and write REPORT.md, report.html and report.json.

    build_report(ReportConfig(out=Path("report"), seeds=3))

Stages (each timed and announced on the terminal): data -> train fc/cnn per seed -> custom
loop -> analysis -> figures; then the files are written. Every model trained keeps its run
folder under ``<out>/runs/`` so ``mnistlab evaluate|predict|serve`` can use it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import console
from mnistlab.errors import UserError
from mnistlab.machine import load_average, torch_threads

MODELS = ("fc", "cnn")
# 3 seeds keep `make run` near 10 minutes on a 2-core CPU (the seed CNN: about 1.5-2 min per
# seed in bf16) while still giving a t-interval (2 degrees of freedom).
DEFAULT_SEEDS = 3
QUICK_LIMIT = 5_000          # --quick: training images per model
QUICK_LOOP_STEPS = 300       # --quick: custom-loop iterations (the full pass is 5,000)


@dataclass
class ReportConfig:
    """What one report run does; written into report.json as ``config``."""

    out: Path = Path("report")     # REPORT.md, report.html, report.json, figures/, runs/
    seeds: int = DEFAULT_SEEDS     # independent trainings per model (seeds first_seed, +1, ...)
    first_seed: int = 0
    epochs: int = 0                # 0: the seed preset's 5
    limit: int = 0                 # train on the first N training images; 0: all 60,000
    test_limit: int = 0            # evaluate on the first N test images; 0: all 10,000
    loop_steps: int = 0            # custom loop iterations; 0: one full pass (5,000 at batch 12)
    threads: int = 0               # torch threads; 0: PyTorch's default (all cores)
    quick: bool = False            # a smoke run: one seed, one epoch, a subset (see quick())
    reuse: bool = False            # use finished runs in <out>/runs with the same settings
    executor: str = "local"        # local: in this process, one after another | ray: through
                                   # mnistlab.sweep (a local Ray, or the cluster at ``address``)
    address: str | None = None

    def quick_defaults(self) -> ReportConfig:
        """Fill what --quick implies, keeping anything the user set explicitly."""
        if not self.quick:
            return self
        return replace(self, seeds=1, epochs=self.epochs or 1, limit=self.limit or QUICK_LIMIT,
                       loop_steps=self.loop_steps or QUICK_LOOP_STEPS)

    def check(self) -> None:
        for name in ("seeds",):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("epochs", "limit", "test_limit", "loop_steps", "threads", "first_seed"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, "
                                f"got {getattr(self, name)}")
        if 0 < self.limit < 100:
            raise UserError(f"--limit {self.limit} is too small to train on; use 100 or more")
        if 0 < self.test_limit < 100:
            raise UserError(f"--test-limit {self.test_limit} is too small to measure anything; "
                            "use 100 or more")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


@dataclass
class Trained:
    """One finished training run and what the report measures on it."""

    model: str
    seed: int
    run_dir: Path
    metrics: dict[str, Any]            # the run's metrics.json
    history: list[dict[str, Any]]      # the run's history.json
    probs: np.ndarray                  # (N_test, 10) softmax on the test images
    train_eval: dict[str, float]       # the finished model re-measured on its training images


@dataclass
class Stages:
    """Announces each stage on the terminal and records its duration (seconds)."""

    total: int
    say: Callable[[str], None] = console.say
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.say(f"[{len(self.seconds) + 1}/{self.total}] {name} ...")
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.seconds[name] = round(took, 2)
        self.say(f"[{len(self.seconds)}/{self.total}] {name}: done in {took:.1f} s")


def build_report(cfg: ReportConfig, *, say: Callable[[str], None] = console.say) -> dict:
    """Run every stage and write the report into ``cfg.out``; returns report.json's content."""
    from mnistlab.report import figures, numbers, render

    cfg = cfg.quick_defaults()
    cfg.check()
    started = time.time()
    t0 = time.perf_counter()
    out = Path(cfg.out).expanduser().resolve()
    _check_out(out)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    on_ray = cfg.executor != "local"
    stages = Stages(total=1 + on_ray + len(seeds) * len(MODELS) + 3, say=say)

    with torch_threads(cfg.threads):
        with stages("data: load MNIST"):
            data = _load_data(cfg)
        if on_ray:  # train every run first, then read them below as --reuse does
            from mnistlab.sweep.report_hook import train_report_runs

            with stages(f"train {len(seeds) * len(MODELS)} runs on {cfg.executor}"):
                train_report_runs([(_seed_config(m, s, cfg), out / "runs" / f"{m}-seed{s}")
                                   for s in seeds for m in MODELS], executor=cfg.executor,
                                  address=cfg.address, reuse=cfg.reuse)
        trained: list[Trained] = []
        for seed in seeds:
            for model in MODELS:
                with stages(f"train {model} (seed preset), seed {seed}"):
                    trained.append(_train(model, seed, replace(cfg, reuse=cfg.reuse or on_ray),
                                          data, out / "runs", say))
        with stages("custom training loop"):
            loop = _custom_loop(cfg, out)
    with stages("analysis"):
        report = numbers.compute(trained, loop, data, cfg)
    with stages("figures"):
        report["figures"] = figures.draw_all(report, trained, data, out / "figures",
                                             loop_figure=loop.get("figure"))
    # The total up to here; writing the files takes well under a second more. One value, so
    # REPORT.md, report.json and the terminal agree.
    report["meta"] |= _meta(cfg, started, t0, stages)
    say("writing REPORT.md, report.html, report.json ...")
    render.write_all(report, out)
    return report


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the report folder {out} ({exc.strerror}); "
                        "choose another with --out DIR") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"the report folder {out} is not writable; choose another with --out")


def _meta(cfg: ReportConfig, started: float, t0: float, stages: Stages) -> dict[str, Any]:
    import platform

    import torch

    from mnistlab import __version__

    return {
        "config": cfg.to_dict(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "stage_seconds": dict(stages.seconds),
        "load_average": load_average(),
        "cpu_count": os.cpu_count(),
        "threads": cfg.threads or torch.get_num_threads(),
        "versions": {"mnistlab": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": _command(cfg),
    }


def _command(cfg: ReportConfig) -> str:
    """The command line that repeats this report."""
    parts = ["mnistlab report"]
    if cfg.quick:
        parts.append("--quick")
    defaults = ReportConfig().quick_defaults() if not cfg.quick else \
        replace(ReportConfig(quick=True)).quick_defaults()
    for name in ("seeds", "epochs", "limit", "test_limit", "loop_steps", "first_seed",
                 "threads"):
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    parts.append(f"--out {cfg.out}")
    return " ".join(parts)


# --- stages --------------------------------------------------------------------------------

def _load_data(cfg: ReportConfig) -> dict[str, Any]:
    from mnistlab.data import load_dataset
    from mnistlab.train import TrainConfig, load_tensors

    x_train, y_train, x_test, y_test = load_tensors(TrainConfig(limit=cfg.limit,
                                                                test_limit=cfg.test_limit))
    test_images, test_labels = load_dataset("mnist", "test")
    n_test = len(x_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "test_images": np.asarray(test_images[:n_test]),
            "test_labels": np.asarray(test_labels[:n_test])}


def _finished_with(run_dir: Path, settings: dict[str, Any]) -> bool:
    """Whether ``run_dir`` is a finished run trained with ``settings`` (thread count aside)."""
    from mnistlab import runs

    if not (run_dir / runs.METRICS).is_file() or not (run_dir / runs.WEIGHTS).is_file():
        return False
    try:
        saved = runs.read_config(run_dir).get("train", {})
    except UserError:
        return False
    return all(saved.get(k) == v for k, v in settings.items() if k != "threads")


def _seed_config(model: str, seed: int, cfg: ReportConfig) -> Any:
    from mnistlab.train import TrainConfig
    from mnistlab.train.presets import preset_overrides

    overrides = preset_overrides("seed", model)
    if cfg.epochs:
        overrides["epochs"] = cfg.epochs
    return TrainConfig(model=model, seed=seed, limit=cfg.limit, test_limit=cfg.test_limit,
                       threads=cfg.threads, preset="seed", **overrides)


def _train(model: str, seed: int, cfg: ReportConfig, data: dict[str, Any],
           runs_root: Path, say: Callable[[str], None] = console.say) -> Trained:
    from mnistlab import runs
    from mnistlab.train import evaluate, fit, predict_proba, prepare_model
    from mnistlab.train.callbacks import KerasLogger
    config = _seed_config(model, seed, cfg)
    run_dir = runs_root / f"{model}-seed{seed}"
    if cfg.reuse and _finished_with(run_dir, asdict(config)):
        precision = runs.read_metrics(run_dir)["precision"]
        # The same memory layout as during fit(), so the same kernels give the same numbers.
        trained = prepare_model(runs.load_model(run_dir), precision)
        say(f"reusing {run_dir}")
    else:
        if run_dir.exists():  # a previous report's run: this report re-trains it from scratch
            shutil.rmtree(run_dir)
        result = fit(config, run_dir, callbacks=[KerasLogger()])
        precision, trained = result.metrics["precision"], result.model
    probs = predict_proba(trained, data["x_test"], precision=precision)
    train_eval = evaluate(trained, data["x_train"], data["y_train"], precision=precision)
    return Trained(model=model, seed=seed, run_dir=run_dir, metrics=runs.read_metrics(run_dir),
                   history=runs.read_history(run_dir), probs=probs,
                   train_eval={"accuracy": train_eval["test_accuracy"],
                               "loss": train_eval["test_loss"]})


def _custom_loop(cfg: ReportConfig, out: Path) -> dict[str, Any]:
    """The explicit training loop (figure 6), through ``mnistlab.mechanics``; its run folder
    is ``<out>/runs/loop-seed<N>``."""
    from mnistlab.report import loop_stage

    return loop_stage.run(steps=cfg.loop_steps, limit=cfg.limit, seed=cfg.first_seed,
                          threads=cfg.threads, reuse=cfg.reuse,
                          run_dir=out / "runs" / f"loop-seed{cfg.first_seed}",
                          figure_path=out / "figures" / "fig6_custom_loop_loss.png")
