"""`mnistlab loop`, `mnistlab scratch`, `mnistlab gradcheck`: training mechanics, shown and proved.

Thin: each handler builds a config, calls ``mnistlab.mechanics``, and prints what it returns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mnistlab import console


def _loop_flags(p: argparse.ArgumentParser) -> None:
    from mnistlab.cli import flags
    from mnistlab.mechanics.loop import LoopConfig

    flags.add_fields(p, LoopConfig, only=LOOP_FLAGS)


def _scratch_flags(p: argparse.ArgumentParser) -> None:
    from mnistlab.cli import flags
    from mnistlab.mechanics.scratch import ScratchConfig

    flags.add_fields(p, ScratchConfig, only=SCRATCH_FLAGS)


# The config fields each command exposes, in --help's order (the others keep their defaults).
LOOP_FLAGS = ("model", "steps", "batch_size", "lr", "seed", "limit", "threads", "device",
              "refresh_seconds")
SCRATCH_FLAGS = ("epochs", "lr", "batch_size", "seed", "limit", "threads", "twin")
# gradcheck's own bounds: a batch is at most the training images (checked against the data);
# more finite-difference samples than this is minutes of float64 forward passes
GRADCHECK_MAX_SAMPLES = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab import checks
    from mnistlab.cli import flags

    p = sub.add_parser(
        "loop", help="the explicit training loop (autograd.grad + hand-written SGD), live curve",
        description="Train with an explicit loop: batch -> forward -> loss -> "
                    "torch.autograd.grad -> p -= lr * grad, by hand. Defaults: the reference "
                    "lab's (seed CNN, batch 12, SGD 0.01, one pass = 5,000 iterations). Writes "
                    "an ordinary run folder plus loss.csv and figures/loss-curve.png, which is "
                    "rewritten every few seconds while the loop runs.")
    p.defer(_loop_flags)                 # LoopConfig's module imports torch
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the run folder (default: a new folder under runs/ or $MNISTLAB_RUNS_DIR)")
    p.add_argument("--json", action="store_true", help="end with one JSON object (the metrics)")
    p.set_defaults(func=loop)

    p = sub.add_parser(
        "scratch", help="the FC network in plain NumPy (backward by hand), trained on MNIST",
        description="Train the seed's FC network written in NumPy alone: forward, stable "
                    "softmax cross-entropy, hand-written backward, SGD. Defaults: the seed FC's "
                    "settings (lr 0.1, batch 64, 5 epochs, Glorot-uniform init).")
    p.defer(_scratch_flags)
    p.add_argument("--json", action="store_true", help="end with one JSON object (the metrics)")
    p.set_defaults(func=scratch)

    p = sub.add_parser(
        "gradcheck", help="check the NumPy backward pass against autograd and finite differences",
        description="On one batch and one set of weights, in float64: the hand-written "
                    "gradients of the NumPy FC network against torch autograd (max relative "
                    "error must be < 1e-7) and against central finite differences on a sample of "
                    "weights (< 1e-5). Exits 1 when either check fails.")
    flags.add_option(p, "--batch-size", int, default=32, meta={
        "help": "training images in the batch", "min": 1, "max_of": "the training images"})
    flags.add_option(p, "--seed", int, default=0, meta={
        "help": "weights and the sampled weights", "min": 0, "below": checks.SEED_BELOW})
    flags.add_option(p, "--samples", int, default=16, meta={
        "help": "finite-difference samples per parameter tensor", "min": 1,
        "max": GRADCHECK_MAX_SAMPLES})
    flags.add_option(p, "--eps", float, default=1e-5, meta={
        "help": "finite-difference step", "above": 0, "max": 1.0})
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=gradcheck)


def training_images(dataset: str = "mnist") -> int:
    """How many training images ``dataset`` has: its pinned count, which the verified cache
    holds exactly (the files' SHA-256 are pinned too), so nothing is loaded to know it."""
    from mnistlab.data.specs import DATASETS

    return DATASETS[dataset].counts["train"]


def loop(args: argparse.Namespace) -> int:
    from mnistlab.cli import flags
    from mnistlab.errors import UserError
    from mnistlab.folders import new_run_folder, release
    from mnistlab.mechanics.loop import CURVE_PNG, LoopConfig, LoopStart, run_loop

    config = LoopConfig(**flags.given(args, LoopConfig))
    label = flags.label_for(LoopConfig)
    config.validate(label)                # bad flags fail before a folder is created
    config.validate_sizes(training_images(config.dataset), label)
    created = args.out is None or not Path(args.out).expanduser().exists()
    run_dir = new_run_folder(args.out, f"loop-{config.model}-s{config.seed}")
    bar = None

    def on_start(info: LoopStart) -> None:
        nonlocal bar
        console.say(f"explicit loop: {config.model} ({info.parameters:,} parameters), "
                    f"{info.train_images:,} training images, batch {config.batch_size}, "
                    f"SGD lr {config.lr:g}, {info.steps:,} iterations, seed {config.seed}, "
                    f"{info.threads} thread(s)")
        console.say(f"live loss curve: {run_dir / CURVE_PNG}")
        bar = console.progress(total=info.steps, desc="loop", unit="step")

    def on_step(step: int, loss: float, smoothed: float) -> None:
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(smoothed_loss=f"{smoothed:.4f}", refresh=False)

    try:
        result = run_loop(config, run_dir, on_start=on_start, on_step=on_step)
    except UserError as exc:
        if not any(run_dir.iterdir()):   # refused before anything was written: leave no trace
            if created:
                run_dir.rmdir()
            raise
        # diverged: the curve up to there is worth a look (a lesson of its own), so it stays,
        # and the message says where, and that it is no finished run
        raise UserError(f"{exc}; the loss curve up to there is kept in {run_dir} (not a "
                        "finished run: it has no weights)") from None
    except KeyboardInterrupt:
        # as for a divergence: the curve so far stays, and the message says it is no run
        if not any(run_dir.iterdir()):
            if created:
                run_dir.rmdir()
            sys.stderr.write("\ninterrupted before the loop began; nothing is kept\n")
        else:
            sys.stderr.write(f"\ninterrupted: the loss curve so far is kept in {run_dir} (not a "
                             "finished run: it has no weights; run the loop again)\n")
        return 130
    finally:
        if bar is not None:
            bar.close()
        release(run_dir)
    m = result.metrics
    console.say(f"{m.steps:,} iterations in {m.train_seconds:.1f} s "
                f"({m.images_per_second:,.0f} images/s); smoothed loss "
                f"{m.smoothed_first:.4f} -> {m.smoothed_last:.4f}")
    console.say(f"test accuracy {m.test_accuracy:.4f}, loss {m.test_loss:.4f}; "
                f"run: {run_dir}")
    if args.json:
        console.emit_json(m.to_dict())
    return 0


def scratch(args: argparse.Namespace) -> int:
    from mnistlab.cli import flags
    from mnistlab.mechanics.scratch import ScratchConfig, train_scratch
    from mnistlab.runs import HistoryRow
    from mnistlab.train.callbacks import epoch_line

    config = ScratchConfig(**flags.given(args, ScratchConfig))
    label = flags.label_for(ScratchConfig)
    config.validate(label)
    config.validate_sizes(training_images(config.dataset), label)
    console.say(f"numpy FC (784-{config.hidden}-10, backward by hand): SGD lr {config.lr:g}, "
                f"batch {config.batch_size}, {config.epochs} "
                f"epoch{'s' if config.epochs != 1 else ''}, seed {config.seed}")
    bar = None

    def on_batch(idx: Sequence[int]) -> None:
        nonlocal bar
        if bar is None:
            bar = console.progress(desc=f"Epoch {len(done) + 1}/{config.epochs}", unit="img")
        bar.update(len(idx))

    done: list[HistoryRow] = []

    def on_epoch(row: HistoryRow, twin_accuracy: float | None) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        done.append(row)
        line = epoch_line(row, config.epochs)
        if twin_accuracy is not None:
            line += f"  | torch twin val_accuracy: {twin_accuracy:.4f}"
        console.say(line)

    try:
        result = train_scratch(config, on_epoch=on_epoch, on_batch=on_batch)
    finally:
        if bar is not None:
            bar.close()
    m = result.metrics
    if args.json:
        console.emit_json(m.to_dict())
    else:
        console.say(f"test accuracy {m.test_accuracy:.4f}, loss {m.test_loss:.4f}; "
                    f"{m.train_seconds:.1f} s of training")
        if config.twin:
            console.say(f"torch twin (same init, same batches, autograd + torch.optim.SGD): test "
                        f"accuracy {m.twin_test_accuracy:.4f}; largest weight difference "
                        f"{m.twin_max_weight_diff:.1e}")
    return 0


LARGE_EPS = 1e-3       # a finite-difference step beyond this measures more than the slope


def gradcheck(args: argparse.Namespace) -> int:
    from mnistlab import checks
    from mnistlab.mechanics.gradcheck import gradcheck_mnist

    checks.at_most("--batch-size", args.batch_size, training_images(), "the mnist training images")
    r = gradcheck_mnist(batch_size=args.batch_size, seed=args.seed,
                        samples_per_param=args.samples, eps=args.eps)
    verdict = {True: "ok", False: "FAILED"}
    per = "  ".join(f"{k} {v:.1e}" for k, v in r.per_param_autograd.items())
    console.say(f"gradcheck: NumPy FC, float64, batch of {r.batch_size} training images, "
                f"seed {args.seed}; loss numpy {r.loss_numpy:.12f}, torch {r.loss_torch:.12f}")
    console.say(f"vs torch autograd (all {len(r.per_param_autograd)} tensors, every "
                f"element): max relative error {r.max_rel_error_autograd:.2e} "
                f"(< {r.autograd_tolerance:g}: {verdict[r.autograd_ok]})  [{per}]")
    console.say(f"vs central finite differences (eps {r.eps:g}, {r.finite_diff_samples} sampled "
                f"weights): max relative error {r.max_rel_error_finite_diff:.2e} "
                f"(< {r.finite_diff_tolerance:g}: {verdict[r.finite_diff_ok]})")
    if r.autograd_ok and not r.finite_diff_ok and r.eps > LARGE_EPS:
        # the backward agrees with autograd: the step, not the gradient, is what is off
        console.say(f"note: with eps {r.eps:g} the finite differences measure the loss's "
                    f"curvature as well as its slope; the backward pass agrees with autograd. "
                    f"Try a step near the default, 1e-5")
    if args.json:
        console.emit_json(r.to_dict())
    return 0 if r.passed else 1
