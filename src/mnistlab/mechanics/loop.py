"""The explicit training loop (``mnistlab loop``): every phase of a step written out, no
optimizer object, then the same loop with data, a live loss curve and a saved run.

    losses = train_loop(model, batches, steps=500, lr=0.01)   # the loop itself, to be read
    result = run_loop(LoopConfig(steps=500), run_dir)        # train, evaluate, write the run

``train_loop`` is the PyTorch counterpart of the reference lab's ``tf.GradientTape`` loop. The
run folder ``run_loop`` writes is an ordinary mnistlab run (config.json, model.safetensors,
history, metrics), so ``mnistlab evaluate`` and ``mnistlab predict`` work on it, plus two files
of its own:

    loss.csv                  step, loss, smoothed: one row per iteration
    figures/loss-curve.png    raw loss (faint) and its exponential average (bold), log y axis;
                              rewritten every ``refresh_seconds`` while the loop runs
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import checks
from mnistlab.data.batches import Batches
from mnistlab.data.specs import DATASETS
from mnistlab.errors import UserError
from mnistlab.mechanics.curve import SMOOTHING, ema, plot_loss_curve, write_loss_csv
from mnistlab.models import available, count_parameters
from mnistlab.runs import (
    HistoryRow,
    JSONObject,
    LoopSettings,
    RunConfig,
    RunMetrics,
    environment,
    save_run,
    write_config,
)
from mnistlab.threads import torch_threads
from mnistlab.train.build import build
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_split
from mnistlab.train.device import DEVICES, describe, resolve_device, to_device
from mnistlab.train.phases import evaluate
from mnistlab.train.precision import prepare_model

OnStep = Callable[[int, float], None]


def train_loop(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
               steps: int, lr: float, on_step: OnStep | None = None) -> list[float]:
    """Run ``steps`` SGD iterations and return the loss of each, in order.

    One iteration: take a batch, forward pass, loss, gradients with ``torch.autograd.grad``,
    then move every parameter against its gradient by hand: p <- p - lr * dL/dp.
    ``on_step(step, loss)`` (step counts from 1) lets a caller draw progress; it returns nothing.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    losses: list[float] = []
    for step, (x, y) in zip(range(1, steps + 1), batches, strict=False):
        logits = model(x)                                   # forward: (B, 1, 28, 28) -> (B, 10)
        loss = F.cross_entropy(logits, y)                   # mean over the batch
        grads = torch.autograd.grad(loss, params)           # dL/dp for each parameter
        with torch.no_grad():                               # the update is not part of the graph
            for p, g in zip(params, grads, strict=True):
                p -= lr * g                                 # SGD, written out
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    if len(losses) < steps:
        raise ValueError(f"the batch stream ended after {len(losses)} of {steps} steps")
    return losses


def batch_stream(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches: a fresh seeded permutation for each pass over the data.

    Full batches only (60,000 / 12 = 5,000 per pass), so every loss on the curve is a mean over
    exactly ``batch_size`` images.
    """
    passes = Batches(x, y, batch_size, shuffle=True, seed=seed, drop_last=True)
    if len(passes) == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {len(x)} training images")
    while True:
        yield from passes


def layout(model: nn.Module) -> nn.Module:
    """``model`` in the memory layout its loop steps fastest in: channels_last for a conv model
    on the CPU, where PyTorch's max-pool and its backward run vectorised over the channels
    instead of walking each channel's map (the seed CNN's full pass, 5,000 iterations of batch
    12 on one thread of an AMD EPYC Zen 5: 58 s against 76 s). The arithmetic is the same
    float32; only the order in which oneDNN sums a convolution's products changes, so the
    losses move in their last digits. A batch of one-channel images is already channels_last.
    Elsewhere (a GPU, a model without convolutions) the model is returned as it is."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return prepare_model(model, "fp32", engine="channels-last") if on_cpu else model


LOSS_CSV = "loss.csv"
CURVE_PNG = "figures/loss-curve.png"


# A million iterations of batch 12 is 200 passes over MNIST, hours on a CPU: anything more is a
# typo. The curve rewrite interval beyond an hour would show nothing while it runs.
MAX_STEPS = 1_000_000
MAX_REFRESH_SECONDS = 3600.0


@dataclass
class LoopConfig:
    """The reference lab's custom loop, by default: seed CNN, batch 12, SGD 1e-2, one pass.

    Each field's help and bounds are in its metadata (``mnistlab.checks``): ``validate`` checks
    them, and ``mnistlab loop``'s flags are generated from them."""

    model: str = field(default="cnn", metadata={"help": "a registered model"})
    # iterations; 0: one pass over the training images (5,000)
    steps: int = field(default=0, metadata={
        "help": "iterations", "min": 1, "max": MAX_STEPS, "unset": 0,
        "unset_means": "one pass over the training images"})
    # images per iteration; at most the training images (checked against the data: run_loop)
    batch_size: int = field(default=12, metadata={
        "help": "images per iteration", "min": 1, "max_of": "the training images"})
    lr: float = field(default=1e-2, metadata={"help": "SGD learning rate: p <- p - lr * dL/dp",
                                              "above": 0})
    seed: int = field(default=0, metadata={"help": "model init and batch order",
                                           "min": 0, "below": checks.SEED_BELOW})
    # train on the first N training images; 0: all 60,000
    limit: int = field(default=0, metadata={
        "help": "train on the first N training images only", "min": 1, "unset": 0,
        "max_of": "the training images",
        "unset_means": "all", "metavar": "N"})
    # torch intra-op threads; 0: PyTorch's default (all cores). One, because batches of 12 give
    # threads little to share, and on this shared 2-core machine under load one thread measured
    # about 500 images/s against 40-60 with two.
    threads: int = field(default=1, metadata={
        "help": "torch threads (0: all cores; 1 is fastest for batches of 12 on a busy CPU)",
        "min": 0, "cores": True})
    # EMA factor of the smoothed curve
    smoothing: float = field(default=SMOOTHING, metadata={
        "help": "EMA factor of the smoothed curve", "min": 0.0, "below": 1.0})
    # how often the PNG and loss.csv are rewritten during the run, in seconds
    refresh_seconds: float = field(default=5.0, metadata={
        "help": "rewrite the curve PNG and loss.csv this often during the run",
        "above": 0, "max": MAX_REFRESH_SECONDS, "flag": "--refresh", "metavar": "SECONDS"})
    dataset: str = field(default="mnist", metadata={"help": "which dataset",
                                                    "choices": tuple(DATASETS)})
    # auto: cuda, else mps, else cpu (mnistlab.train.device); config.json's environment
    # records the device resolved
    device: str = field(default="auto", metadata={
        "help": "where to train: auto (cuda, else mps, else cpu), cpu, cuda or mps",
        "choices": DEVICES})

    def validate(self, label: Callable[[str], str] = str) -> None:
        """UserError for a setting that cannot run (a --device this machine lacks included);
        ``label`` names settings in the message."""
        checks.one_of(label("model"), self.model, available())
        checks.check_fields(self, label)
        resolve_device(self.device, label("device"))

    def validate_sizes(self, train_images: int, label: Callable[[str], str] = str) -> None:
        """The bounds that need the data: ``train_images`` is the full training split."""
        checks.training_sizes(label, limit=self.limit, batch_size=self.batch_size,
                              train_images=train_images, dataset=self.dataset)


@dataclass
class LoopResult:
    losses: list[float]
    metrics: RunMetrics
    run_dir: Path
    model: nn.Module | None = field(repr=False, default=None)


@dataclass
class LoopStart:
    """What ``run_loop`` is about to do, for a progress display (``on_start``)."""

    steps: int                     # iterations
    train_images: int
    threads: int                   # torch intra-op threads in force
    parameters: int


class LiveCurve:
    """An ``on_step`` callback that records the losses and, every ``refresh_seconds``, rewrites
    the curve PNG and loss.csv (atomically: a viewer sees the previous or the new file)."""

    def __init__(self, run_dir: Path, *, title: str, total_steps: int | None = None,
                 smoothing: float = SMOOTHING, refresh_seconds: float = 5.0) -> None:
        self.png, self.csv = run_dir / CURVE_PNG, run_dir / LOSS_CSV
        self.title, self.smoothing, self.refresh = title, smoothing, refresh_seconds
        self.total_steps = total_steps
        self.losses: list[float] = []
        self.smoothed_now = math.nan           # the running average, for a progress bar
        self._last_write = time.monotonic()

    def __call__(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            self.write()
            raise UserError(f"the loss became {loss} at iteration {step}; the learning rate is "
                            "probably too high (try a smaller --lr)")
        self.losses.append(loss)
        f = self.smoothing
        self.smoothed_now = loss if step == 1 else f * self.smoothed_now + (1 - f) * loss
        if time.monotonic() - self._last_write >= self.refresh:
            self.write()

    def write(self) -> None:
        if not self.losses:
            return
        steps = np.arange(1, len(self.losses) + 1)
        smoothed = ema(self.losses, self.smoothing)
        write_loss_csv(self.csv, steps, self.losses, smoothed)
        plot_loss_curve(steps, self.losses, smoothed, self.png, title=self.title,
                        smoothing=self.smoothing, total_steps=self.total_steps)
        self._last_write = time.monotonic()


def run_loop(config: LoopConfig, run_dir: str | Path, *,
             on_start: Callable[[LoopStart], None] | None = None,
             on_step: Callable[[int, float, float], None] | None = None) -> LoopResult:
    """Train ``config`` with ``train_loop``, evaluate on the test set, write the run folder.

    For a progress display: ``on_start(LoopStart)`` once before the first iteration, then
    ``on_step(step, loss, smoothed)`` after each. Same config and seed, same thread count:
    the same losses and weights.
    """

    config.validate()
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    # on a GPU the images are moved once and stay there (Batches draws its order on the CPU)
    x_train, y_train = to_device(device, *load_split(config.dataset, "train", config.limit))
    x_test, y_test = to_device(device, *load_split(config.dataset, "test"))
    per_pass = len(x_train) // config.batch_size
    if per_pass == 0:
        raise UserError(f"batch size {config.batch_size} is larger than the {len(x_train)} "
                        "training images; choose a smaller --batch-size or a larger --limit")
    steps = config.steps or per_pass

    with torch_threads(config.threads) as threads:
        # build() seeds torch with config.seed, then initialises the model (Keras init).
        model, model_config = build(TrainConfig(model=config.model, seed=config.seed))
        model = layout(model.to(device))
        write_config(run_dir, _config_json(config, model_config, model, threads, steps,
                                           describe(device)))
        title = (f"Explicit training loop: {config.model}, SGD {config.lr:g}, batch "
                 f"{config.batch_size}, {steps:,} iterations")
        curve = LiveCurve(run_dir, title=title, total_steps=steps, smoothing=config.smoothing,
                          refresh_seconds=config.refresh_seconds)

        def step_hook(step: int, loss: float) -> None:
            curve(step, loss)
            if on_step is not None:
                on_step(step, loss, curve.smoothed_now)

        if on_start is not None:
            on_start(LoopStart(steps=steps, train_images=len(x_train), threads=threads,
                               parameters=count_parameters(model)))

        start = time.perf_counter()
        try:
            losses = train_loop(model, batch_stream(x_train, y_train, config.batch_size,
                                                    seed=config.seed),
                                steps=steps, lr=config.lr, on_step=step_hook)
        finally:
            curve.write()        # also on Ctrl-C: the curve so far stays on disk
        seconds = time.perf_counter() - start
        test = evaluate(model, x_test, y_test, device=device.type)

    smoothed = ema(losses, config.smoothing)
    history = _history(losses, smoothed, per_pass, test)
    metrics = RunMetrics(
        model=config.model, dataset=config.dataset, preset="loop", kind="loop",
        seed=config.seed, precision="fp32", threads=threads,
        steps=steps, batch_size=config.batch_size, lr=config.lr,
        epochs=round(steps / per_pass, 4),              # passes over the training images
        parameters=count_parameters(model),
        test_accuracy=test["test_accuracy"], test_loss=test["test_loss"],
        train_loss=history[-1].train_loss,              # mean over the last pass, as Keras shows
        loss_first=losses[0], loss_last=losses[-1],
        smoothed_first=float(smoothed[0]), smoothed_last=float(smoothed[-1]),
        train_seconds=round(seconds, 3),
        images_per_second=round(steps * config.batch_size / seconds, 1),
        train_images=len(x_train), test_images=len(x_test),
        run_dir=str(run_dir),
    )
    save_run(run_dir, model=model, model_name=config.model, model_config=model_config,
                  history=history, metrics=metrics)
    return LoopResult(losses=losses, metrics=metrics, run_dir=run_dir, model=model.eval())


def _config_json(config: LoopConfig, model_config: JSONObject, model: nn.Module, threads: int,
                 steps: int, device: str) -> RunConfig:
    settings = LoopSettings(model=config.model, steps=steps, batch_size=config.batch_size,
                            lr=config.lr, seed=config.seed, limit=config.limit, threads=threads,
                            smoothing=config.smoothing, refresh_seconds=config.refresh_seconds,
                            dataset=config.dataset)
    return RunConfig(model=config.model, model_config=model_config, precision="fp32",
                     threads=threads, parameters=count_parameters(model), kind="loop",
                     loop=settings, environment=environment(threads, device=device),
                     created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _history(losses: list[float], smoothed: np.ndarray, per_pass: int,
             test: dict[str, float]) -> list[HistoryRow]:
    """One row per pass over the training images (the last may be partial); only the last is
    evaluated."""
    rows = []
    for epoch, start in enumerate(range(0, len(losses), per_pass), 1):
        chunk = losses[start:start + per_pass]
        rows.append(HistoryRow(epoch=epoch, steps=len(chunk), train_loss=float(np.mean(chunk)),
                               smoothed_loss=float(smoothed[start + len(chunk) - 1])))
    rows[-1].test_loss, rows[-1].test_accuracy = test["test_loss"], test["test_accuracy"]
    return rows
