"""fit(): a whole training run in named phases, its numbers returned, not printed.

    config = TrainConfig(model="cnn", **preset_overrides("seed", "cnn"))
    result = fit(config, run_dir)                 # trains, checkpoints each epoch, writes the run

fit() = prepare (data, model, optimizer, schedule; or restore a checkpoint) -> for each epoch:
train_one_epoch -> evaluate -> save (checkpoint, weights, history) -> callbacks. Printing is a
callback's job (``mnistlab.train.callbacks.KerasLogger``); the phases (``mnistlab.train.phases``)
only return numbers.

Reproducibility: the model is initialised from ``torch.manual_seed(seed)``, the batch order from
its own generator seeded with ``seed``, augmentation from another (``seed + 1``); all three
states go into every checkpoint, so a resumed run continues exactly where it stopped. On one
machine, with one PyTorch version and one thread count, fp32 runs with the same seed give
identical figures; PyTorch promises nothing across versions, platforms or thread counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# Through the package, not its modules: runs.schema reads TrainConfig, so mnistlab.runs may be
# mid-import when this module loads; its names are looked up when fit() runs.
from mnistlab import runs
from mnistlab.data.batches import Batches
from mnistlab.errors import UserError
from mnistlab.models import count_parameters
from mnistlab.threads import torch_threads
from mnistlab.train.build import build, make_optimizer, make_scheduler
from mnistlab.train.calibration import Calibration, calibrate, save_calibration
from mnistlab.train.config import TrainConfig, validate
from mnistlab.train.data import load_tensors, load_validation
from mnistlab.train.device import describe, resolve_device, to_device
from mnistlab.train.phases import TrainingDiverged, evaluate, train_one_epoch
from mnistlab.train.precision import choose_engine, make_engine, prepare_model, resolve_precision
from mnistlab.train.resume import check_resumable, restore, save_epoch


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit(); ``epochs_done`` epochs are saved in ``run_dir``."""

    def __init__(self, epochs_done: int, epochs: int, run_dir: Path | None) -> None:
        super().__init__(f"interrupted after {epochs_done} of {epochs} epochs")
        self.epochs_done, self.epochs, self.run_dir = epochs_done, epochs, run_dir


class Callback:
    """Hooks fit() calls; subclass and override what you need (printing, logging, plotting).

    fit() sets ``model`` and ``optimizer`` on each callback before ``on_train_begin``.
    """

    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None

    def on_train_begin(self, info: TrainInfo) -> None: ...
    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, loss: float, accuracy: float) -> None: ...
    def on_epoch_end(self, row: runs.HistoryRow) -> None: ...
    def on_train_end(self, result: FitResult | None) -> None: ...  # None: interrupted


@dataclass
class TrainInfo:
    """What a run is about to train, for ``Callback.on_train_begin``."""

    model: str
    model_config: runs.JSONObject
    precision: str                         # fp32 | bf16 (resolved)
    engine: str                            # the engine --engine resolved to (ENGINES)
    warmup_seconds: float                  # compiling the fused engine's kernels
    threads: int                           # torch intra-op threads in force
    train_images: int
    test_images: int
    steps_per_epoch: int
    parameters: int
    run_dir: Path | None
    resumed_from: int = 0                  # epochs already done (0: a fresh run)
    engine_choice: runs.EngineChoice | None = None   # why that engine (--engine auto: a probe)
    validation_images: int = 0             # held out of training (--validation N), not tested


# --- fit -------------------------------------------------------------------------------------

@dataclass
class FitResult:
    model: nn.Module
    history: list[runs.HistoryRow]
    metrics: runs.RunMetrics
    run_dir: Path | None
    calibration: Calibration | None = None   # with TrainConfig.validation only


def fit(config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False,
        callbacks: Sequence[Callback] = (), command: str | None = None) -> FitResult:
    """Train ``config`` and return the model, its history and final metrics.

    With ``run_dir``, write config.json first, then after each epoch an atomic checkpoint,
    model.safetensors and history, and metrics.json at the end. ``resume`` continues from the
    checkpoint in ``run_dir`` (its saved config must match ``config``, thread count aside).
    ``command`` is recorded in config.json (the CLI records its command line).
    """
    validate(config)
    run_dir = Path(run_dir) if run_dir is not None else None
    with torch_threads(config.threads):
        return _fit(config, run_dir, resume, list(callbacks), command)


def _fit(config: TrainConfig, run_dir: Path | None, resume: bool,
         callbacks: list[Callback], command: str | None) -> FitResult:
    # -- prepare
    device = resolve_device(config.device)
    # on a GPU the data is moved once and stays resident; on the CPU these are the same tensors
    x_train, y_train, x_test, y_test = to_device(device, *load_tensors(config))
    model, model_config = build(config)              # initialised on the CPU: same weights
    model = model.to(device)
    precision = resolve_precision(config, model, device.type)
    model = prepare_model(model, precision)
    # a resumed run keeps the engine it started with; config.json is checked in full below
    started = (runs.read_config(run_dir).engine
               if resume and run_dir is not None and (run_dir / runs.CONFIG).exists() else None)
    # the probe (where --engine auto has a choice) trains copies under a forked RNG: the
    # model's weights and every random stream below are as they would be without it
    choice = choose_engine(config, model, precision, device.type,
                           input_shape=tuple(x_train.shape[1:]), resumed=started)
    engine_name = choice.engine
    model = prepare_model(model, precision, engine_name)      # its layout, before the optimizer
    warmup = time.perf_counter()
    engine = make_engine(engine_name, model, precision)
    warmup = time.perf_counter() - warmup
    batches = Batches(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
    augment_generator = torch.Generator().manual_seed(config.seed + 1)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(batches))
    history: list[runs.HistoryRow] = []
    info = TrainInfo(model=config.model, model_config=model_config, precision=precision,
                     engine=engine_name, warmup_seconds=round(warmup, 3),
                     threads=torch.get_num_threads(), train_images=len(x_train),
                     test_images=len(x_test), steps_per_epoch=len(batches),
                     parameters=count_parameters(model), run_dir=run_dir,
                     engine_choice=choice, validation_images=config.validation)

    if resume:
        if run_dir is None:
            raise UserError("resuming needs the run folder (--out DIR)")
        check_resumable(config, run_dir)
        runs.remove_partial_writes(run_dir)
        if (run_dir / runs.CHECKPOINT).exists():  # else no epoch had finished: start afresh
            ckpt = runs.load_checkpoint(run_dir)
            restore(ckpt, model, optimizer, scheduler, batches, augment_generator)
            history = list(ckpt.history)
            info.resumed_from = ckpt.epoch
            # an interrupt between the checkpoint and the files after it left those an epoch
            # behind; the checkpoint is the truth, so they are written again from it
            runs.save_weights(run_dir / runs.WEIGHTS, model, config.model, model_config)
            runs.write_history(run_dir, history)
            # where and how it goes on (threads and device may differ from the start's)
            runs.record_resumption(run_dir, runs.Resumption(
                epoch=ckpt.epoch, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                threads=info.threads, command=command,
                environment=runs.environment(info.threads, device=describe(device))))
    elif run_dir is not None:
        runs.write_config(run_dir, runs.RunConfig(
            model=config.model, model_config=model_config, precision=precision,
            engine=engine_name, threads=info.threads, parameters=info.parameters,
            train=config, environment=runs.environment(info.threads, device=describe(device)),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=command,
            engine_choice=choice))
    for cb in callbacks:
        cb.model, cb.optimizer = model, optimizer
        cb.on_train_begin(info)

    # -- epochs
    test: dict[str, float] = {}          # the last evaluation (phases.evaluate's figures)
    saved = len(history)               # epochs whose checkpoint is on disk
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, config.epochs, len(batches))
            try:
                train = train_one_epoch(
                    model, batches, optimizer, precision=precision,
                    label_smoothing=config.label_smoothing, scheduler=scheduler,
                    augment=config.augment, augment_generator=augment_generator,
                    on_step=_fan_out(callbacks), engine=engine, device=device.type)
                this_epoch: dict[str, float] = {}
                if config.eval_each_epoch or epoch == config.epochs:
                    test = this_epoch = evaluate(model, x_test, y_test, precision=precision,
                                                 batch_size=config.eval_batch_size,
                                                 device=device.type)
                    if not math.isfinite(this_epoch["test_loss"]):
                        # the epoch's last update broke the weights after its loss was seen
                        raise TrainingDiverged(f"the test loss became {this_epoch['test_loss']}"
                                               " after the last step")
            except TrainingDiverged as exc:
                for cb in callbacks:
                    cb.on_train_end(None)
                kept = (f"; the last good checkpoint (epoch {saved}) is kept in {run_dir}"
                        if run_dir is not None and saved else "")
                raise TrainingDiverged(f"{exc} of epoch {epoch}/{config.epochs} (learning "
                                       f"rate {config.lr:g} may be too high){kept}") from None
            row = _history_row(epoch, train, this_epoch, optimizer)
            history.append(row)
            if run_dir is not None:
                save_epoch(run_dir, config.model, model_config, model, optimizer, scheduler,
                            batches, augment_generator, history)
                saved = epoch
            for cb in callbacks:
                cb.on_epoch_end(row)
        # -- finish (an interrupt here leaves every epoch saved: --resume finishes it)
        if not test:  # resumed a run whose last epoch had finished: evaluate once more
            test = evaluate(model, x_test, y_test, batch_size=config.eval_batch_size,
                            precision=precision, device=device.type)
        calibration = None
        if config.validation:  # fitted on the held-out images, before metrics.json marks the end
            calibration = calibrate(model, *load_validation(config), precision=precision,
                                    x_fit=x_train, y_fit=y_train)
            if run_dir is not None:
                save_calibration(run_dir, calibration)
        metrics = _final_metrics(config, info, history, test, run_dir)
        if run_dir is not None:
            runs.write_metrics(run_dir, metrics)
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_train_end(None)
        raise TrainingInterrupted(saved if run_dir is not None else 0, config.epochs,
                                  run_dir) from None

    result = FitResult(model=model.eval(), history=history, metrics=metrics, run_dir=run_dir,
                       calibration=calibration)
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def _fan_out(callbacks: list[Callback]) -> Callable[[int, float, float], None] | None:
    if not callbacks:
        return None

    def on_step(step: int, loss: float, accuracy: float) -> None:
        for cb in callbacks:
            cb.on_step(step, loss, accuracy)

    return on_step


def _history_row(epoch: int, train: dict[str, float], test: dict[str, float],
                 optimizer: torch.optim.Optimizer) -> runs.HistoryRow:
    return runs.HistoryRow(
        epoch=epoch,
        train_loss=train["train_loss"], train_accuracy=train["train_accuracy"],
        test_loss=test.get("test_loss"),                           # None: not evaluated
        test_accuracy=test.get("test_accuracy"),
        seconds=round(train["seconds"], 4),                        # training phase only
        eval_seconds=round(test.get("seconds", 0.0), 4),
        eval_steps=int(test["steps"]) if "steps" in test else None,   # None: not evaluated
        images_per_second=round(train["images"] / train["seconds"], 1),
        steps=int(train["steps"]),
        lr=optimizer.param_groups[0]["lr"],                        # at the end of the epoch
    )


def _final_metrics(config: TrainConfig, info: TrainInfo, history: list[runs.HistoryRow],
                   test: dict[str, float], run_dir: Path | None) -> runs.RunMetrics:
    train_seconds = sum(r.seconds or 0.0 for r in history)
    images = info.train_images * len(history)
    last = history[-1]
    return runs.RunMetrics(
        model=config.model, dataset=config.dataset, preset=config.preset,
        seed=config.seed, precision=info.precision, engine=info.engine,
        warmup_seconds=info.warmup_seconds,
        threads=info.threads,
        epochs=len(history), parameters=info.parameters,
        test_accuracy=test["test_accuracy"], test_loss=test["test_loss"],
        train_accuracy=last.train_accuracy, train_loss=last.train_loss,
        train_seconds=round(train_seconds, 3),
        eval_seconds=round(sum(r.eval_seconds or 0.0 for r in history), 3),
        images_per_second=round(images / train_seconds, 1) if train_seconds else None,
        train_images=info.train_images, test_images=info.test_images,
        run_dir=str(run_dir) if run_dir is not None else None,
    )
