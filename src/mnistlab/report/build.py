"""The main job: train the seed's two models over several seeds, run the custom loop, measure,
draw, and write REPORT.md, report.html and report.json.

    build_report(ReportConfig(out=Path("report"), seeds=3))

Stages (each timed and announced on the terminal, ``stages.Stages``):
  data (``inputs.StudyData.load``) -> train fc/cnn per seed (``_train``, here) -> custom loop
  (``loop_stage.run``) -> analysis (``numbers.compute``: the typed ``schema.Report``) ->
  figures (``figures.draw_all``); then ``render.write_all`` writes the files.
Every model trained keeps its run folder under ``<out>/runs/`` so
``mnistlab evaluate|predict|serve`` can use it afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mnistlab import checks, console, runs
from mnistlab.errors import UserError
from mnistlab.paths import report_dir
from mnistlab.report import figures, loop_stage, numbers, provenance, render
from mnistlab.report.aside import SetAside
from mnistlab.report.defaults import DEFAULT_SEEDS, MODELS, QUICK_LIMIT, QUICK_LOOP_STEPS
from mnistlab.report.inputs import StudyData, Trained
from mnistlab.report.record import Json
from mnistlab.report.schema import ConfigValue, LoopStudy
from mnistlab.report.stages import Stages
from mnistlab.sweep.report_hook import EXECUTORS, train_report_runs
from mnistlab.threads import torch_threads
from mnistlab.train.callbacks import KerasLogger
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import DEVICES, describe, resolve_device, to_device
from mnistlab.train.evaluation import load_run
from mnistlab.train.fit import fit
from mnistlab.train.phases import evaluate, predict_proba
from mnistlab.train.presets import preset_overrides

__all__ = ["DEFAULT_SEEDS", "MODELS", "QUICK_LIMIT", "QUICK_LOOP_STEPS", "ReportConfig",
           "build_report"]


# More trainings per model than this is days of CPU, not a report; the t-interval is narrow
# long before.
MAX_SEEDS = 100
MAX_EPOCHS = 1000
MAX_LOOP_STEPS = 1_000_000      # mechanics.loop.MAX_STEPS (not imported: that loads torch)
# Fewer images than this train or measure nothing a report could show.
MIN_IMAGES = 100


@dataclass
class ReportConfig:
    """What one report run does; written into report.json as ``config``.

    Each field's help and bounds are in its metadata (``mnistlab.checks``): ``check`` applies
    them, and ``mnistlab report``'s flags are generated from them."""

    # REPORT.md, report.html, report.json, figures/, runs/
    out: Path = field(default=Path("report"), metadata={
        "help": "where REPORT.md, report.html, report.json, figures/, runs/ go"})
    # independent trainings per model (seeds first_seed, +1, ...)
    seeds: int = field(default=DEFAULT_SEEDS, metadata={
        "help": "trainings per model", "min": 1, "max": MAX_SEEDS})
    first_seed: int = field(default=0, metadata={"help": "seeds are N, N+1, ...",
                                                 "min": 0, "below": checks.SEED_BELOW})
    # 0: the seed preset's 5
    epochs: int = field(default=0, metadata={
        "help": "epochs per training", "min": 1, "max": MAX_EPOCHS, "unset": 0,
        "unset_means": "the seed preset's 5; 1 with --quick"})
    # train on the first N training images; 0: all 60,000
    limit: int = field(default=0, metadata={
        "help": "train on the first N training images only", "min": MIN_IMAGES, "unset": 0,
        "max_of": "the training images",
        "unset_means": "all", "metavar": "N"})
    # evaluate on the first N test images; 0: all 10,000
    test_limit: int = field(default=0, metadata={
        "help": "evaluate fc and cnn on the first N test images only (the custom loop always "
                "uses all)", "min": MIN_IMAGES, "unset": 0, "unset_means": "all",
        "max_of": "the test images",
        "metavar": "N"})
    # custom loop iterations; 0: one full pass (5,000 at batch 12)
    loop_steps: int = field(default=0, metadata={
        "help": "custom-loop iterations", "min": 1, "max": MAX_LOOP_STEPS, "unset": 0,
        "unset_means": "one full pass, 5,000"})
    # torch threads; 0: PyTorch's default (all cores)
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)",
                                              "min": 0, "cores": True})
    # a smoke run: one seed, one epoch, a subset (see quick())
    quick: bool = field(default=False, metadata={"help": "a smoke run"})
    # use finished runs in <out>/runs with the same settings
    reuse: bool = field(default=False, metadata={
        "help": "take finished runs in <out>/runs made with the same settings instead of "
                "training them again (re-draws and re-writes the report in minutes)"})
    # local: in this process, one after another | ray: through mnistlab.sweep (a local Ray, or
    # the cluster at ``address``); both give the same numbers at the same thread count
    executor: str = field(default="local", metadata={
        "help": "where the seeds train: local (here, one after another) or ray",
        "choices": EXECUTORS})
    # where fc and cnn train and are evaluated: auto (cuda, else mps, else cpu); the custom
    # loop trains there too. report.json's meta records the device resolved.
    device: str = field(default="auto", metadata={
        "help": "where the models train and are evaluated: auto (cuda, else mps, else cpu), "
                "cpu, cuda or mps", "choices": DEVICES})
    address: str | None = field(default=None, metadata={
        "help": "with --executor ray: a running Ray cluster's HOST:PORT (default: start a "
                "local Ray)", "metavar": "HOST:PORT"})

    def quick_defaults(self) -> ReportConfig:
        """Fill what --quick implies, keeping anything the user set explicitly. The seeds are
        the caller's to choose (the CLI: 1 with --quick unless --seeds says otherwise)."""
        if not self.quick:
            return self
        return replace(self, epochs=self.epochs or 1, limit=self.limit or QUICK_LIMIT,
                       loop_steps=self.loop_steps or QUICK_LOOP_STEPS)

    def check(self, label: Callable[[str], str] = str) -> None:
        """UserError for a setting that cannot run; ``label`` names settings in the message."""
        checks.check_fields(self, label)
        resolve_device(self.device, label("device"))     # a missing GPU: before any write
        last = self.first_seed + self.seeds - 1          # the seeds run are first_seed, +1, ...
        checks.seed(f"{label('first_seed')} + {label('seeds')} - 1", last)

    def check_sizes(self, train_images: int, test_images: int,
                    label: Callable[[str], str] = str) -> None:
        """The bounds that need the data (MNIST's training and test split sizes)."""
        if self.limit:
            checks.at_most(label("limit"), self.limit, train_images, "the mnist training images")
        if self.test_limit:
            checks.at_most(label("test_limit"), self.test_limit, test_images,
                           "the mnist test images")

    def to_dict(self) -> dict[str, ConfigValue]:
        return {**asdict(self), "out": str(self.out)}


def build_report(cfg: ReportConfig, *, say: Callable[[str], None] = console.say
                 ) -> dict[str, Json]:
    """Run every stage and write the report into ``cfg.out``; returns report.json's content."""
    cfg = cfg.quick_defaults()
    cfg.check()
    started = time.time()
    t0 = time.perf_counter()
    out = Path(cfg.out).expanduser().resolve()
    _check_out(out)
    # An earlier report and the runs this one trains again are set aside, not deleted: if this
    # one stops half way, they come back whole, and no REPORT.md describes half-made runs.
    aside = SetAside(out)
    try:
        _set_aside(aside, cfg, out)
        report = _build(cfg, out, started, t0, say)
    except BaseException:
        aside.restore()
        raise
    aside.discard()
    return report


def _set_aside(aside: SetAside, cfg: ReportConfig, out: Path) -> None:
    """The earlier report's files and figures, and each run this report will train again."""
    for name in (*render.FILES, "figures"):
        aside.keep(out / name)
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        for model in MODELS:
            run_dir = out / "runs" / f"{model}-seed{seed}"
            if not (cfg.reuse and _finished_with(run_dir, _seed_config(model, seed, cfg))):
                aside.keep(run_dir)
    loop_dir = _loop_dir(cfg, out)
    if not (cfg.reuse and loop_stage.reusable(loop_dir, **_loop_settings(cfg))):
        aside.keep(loop_dir)


def _build(cfg: ReportConfig, out: Path, started: float, t0: float,
           say: Callable[[str], None]) -> dict[str, Json]:
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    on_ray = cfg.executor != "local"
    stages = Stages(total=1 + on_ray + len(seeds) * len(MODELS) + 3, say=say)

    with torch_threads(cfg.threads):
        with stages("data: load MNIST"):
            data = StudyData.load(limit=cfg.limit, test_limit=cfg.test_limit)
        if on_ray:  # train every run first, then read them below as --reuse does
            with stages(f"train {len(seeds) * len(MODELS)} runs on {cfg.executor}"):
                train_report_runs([(_seed_config(m, s, cfg), out / "runs" / f"{m}-seed{s}")
                                   for s in seeds for m in MODELS], executor=cfg.executor,
                                  address=cfg.address, reuse=cfg.reuse)
        trained: list[Trained] = []
        for seed in seeds:
            for model in MODELS:
                with stages(f"train {model} (seed preset), seed {seed}"):
                    trained.append(_train(model, seed, replace(cfg, reuse=cfg.reuse or on_ray),
                                          data, out / "runs", say,
                                          source=cfg.executor if on_ray else None))
        with stages("custom training loop"):
            loop = _custom_loop(cfg, out)
    with stages("analysis"):
        report = numbers.compute(trained, loop, data)
    with stages("figures"):
        report = replace(report, figures=figures.draw_all(report, trained, data,
                                                          out / "figures"))
    # The total up to here; writing the files takes well under a second more. One value, so
    # REPORT.md, report.json and the terminal agree.
    report = replace(report, provenance=provenance.collect(
        config=cfg.to_dict(), command=_command(cfg), threads=cfg.threads,
        device=describe(resolve_device(cfg.device)), started=started,
        t0=t0, stage_seconds=stages.seconds,
        train_threads=[t.metrics.threads for t in trained]))
    say("writing REPORT.md, report.html, report.json ...")
    render.write_all(report, out)
    return report.to_dict()


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


def _command(cfg: ReportConfig) -> str:
    """The command line that repeats this report."""
    parts = ["mnistlab report"]
    if cfg.quick:
        parts.append("--quick")
    defaults = ReportConfig() if not cfg.quick else \
        replace(ReportConfig(quick=True).quick_defaults(), seeds=1)    # --quick's one seed
    for name in ("seeds", "epochs", "limit", "test_limit", "loop_steps", "first_seed",
                 "threads", "device"):
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    if cfg.executor != "local":                # where the seeds trained is part of the command
        parts.append(f"--executor {cfg.executor}")
    if cfg.address:
        parts.append(f"--address {cfg.address}")
    out = Path(cfg.out).expanduser().resolve()
    if out != report_dir():                 # the default (or $MNISTLAB_REPORT_DIR) goes unsaid
        parts.append(f"--out {_shown(out)}")
    return " ".join(parts)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it: a report shared with
    others should not carry this machine's folders."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- the training stage: one model, one seed ------------------------------------------------

def _finished_with(run_dir: Path, config: TrainConfig) -> bool:
    """Whether ``run_dir`` is a finished run trained with ``config`` (thread count aside)."""
    if not (run_dir / runs.METRICS).is_file() or not (run_dir / runs.WEIGHTS).is_file():
        return False
    try:
        train = runs.read_config(run_dir).train
    except UserError:
        return False
    if train is None:
        return False
    saved, wanted = asdict(train), asdict(config)
    return all(saved.get(k) == v for k, v in wanted.items() if k != "threads")


def _seed_config(model: str, seed: int, cfg: ReportConfig) -> TrainConfig:
    overrides = preset_overrides("seed", model)
    if cfg.epochs:
        overrides["epochs"] = cfg.epochs
    # the device resolved (cpu, cuda, mps): what a reused run must have trained on
    return TrainConfig(model=model, seed=seed, limit=cfg.limit, test_limit=cfg.test_limit,
                       threads=cfg.threads, preset="seed",
                       device=resolve_device(cfg.device).type, **overrides)


def _train(model: str, seed: int, cfg: ReportConfig, data: StudyData,
           runs_root: Path, say: Callable[[str], None] = console.say,
           source: str | None = None) -> Trained:
    """One model and seed: trained here, or read back where it is reusable or was just
    trained on ``source`` (an executor: "ray")."""
    config = _seed_config(model, seed, cfg)
    run_dir = runs_root / f"{model}-seed{seed}"
    if cfg.reuse and _finished_with(run_dir, config):
        # In the memory layout it trained in, so the same kernels give the same numbers.
        loaded = load_run(run_dir, resolve_device(config.device))
        precision, trained = loaded.precision, loaded.model
        say(f"reading {run_dir} ({source}'s run)" if source else f"reusing {run_dir}")
    else:  # a previous report's run is set aside already (_set_aside): trained from scratch
        result = fit(config, run_dir, callbacks=[KerasLogger()])
        precision, trained = result.metrics.precision, result.model
    device = resolve_device(config.device)
    probs = predict_proba(trained, data.x_test, precision=precision)    # back on the CPU
    train_eval = evaluate(trained, *to_device(device, data.x_train, data.y_train),
                          precision=precision, device=device.type)
    return Trained(model=model, seed=seed, run_dir=run_dir,
                   metrics=runs.read_metrics(run_dir), history=runs.read_history(run_dir),
                   probs=probs,
                   train_eval={"accuracy": train_eval["test_accuracy"],
                               "loss": train_eval["test_loss"]})


# --- the custom-loop stage -----------------------------------------------------------------

def _custom_loop(cfg: ReportConfig, out: Path) -> LoopStudy:
    """The explicit training loop (figure 6), through ``mnistlab.mechanics``; its run folder
    is ``<out>/runs/loop-seed<N>``."""
    return loop_stage.run(**_loop_settings(cfg), reuse=cfg.reuse, run_dir=_loop_dir(cfg, out),
                          figure_path=out / "figures" / "fig6_custom_loop_loss.png")


def _loop_dir(cfg: ReportConfig, out: Path) -> Path:
    return out / "runs" / f"loop-seed{cfg.first_seed}"


def _loop_settings(cfg: ReportConfig) -> dict[str, Any]:
    return {"steps": cfg.loop_steps, "limit": cfg.limit, "seed": cfg.first_seed,
            "threads": cfg.threads, "device": resolve_device(cfg.device).type}
