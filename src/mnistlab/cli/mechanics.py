"""`mnistlab loop`, `mnistlab scratch`, `mnistlab gradcheck`: training mechanics, shown and proved.

Thin: each handler builds a config, calls ``mnistlab.mechanics``, and prints what it returns.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mnistlab import console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loop", help="the explicit training loop (autograd.grad + hand-written SGD), live curve",
        description="Train with an explicit loop: batch -> forward -> loss -> "
                    "torch.autograd.grad -> p -= lr * grad, by hand. Defaults: the reference "
                    "lab's (seed CNN, batch 12, SGD 0.01, one pass = 5,000 iterations). Writes "
                    "an ordinary run folder plus loss.csv and figures/loss-curve.png, which is "
                    "rewritten every few seconds while the loop runs.")
    p.add_argument("--model", default="cnn", help="a registered model (default: cnn)")
    p.add_argument("--steps", type=int, default=0,
                   help="iterations (default 0: one pass over the training images)")
    p.add_argument("--batch-size", type=int, default=12, help="images per iteration (12)")
    p.add_argument("--lr", type=float, default=1e-2, help="SGD learning rate (0.01)")
    p.add_argument("--seed", type=int, default=0, help="model init and batch order (0)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1, fastest for batches of 12 on a busy CPU; 0: all cores)")
    p.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                   help="rewrite the curve PNG and loss.csv this often during the run (5)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the run folder (default: a new folder under runs/ or $MNISTLAB_RUNS_DIR)")
    p.add_argument("--json", action="store_true", help="end with one JSON object (the metrics)")
    p.set_defaults(func=loop)

    p = sub.add_parser(
        "scratch", help="the FC network in plain NumPy (backward by hand), trained on MNIST",
        description="Train the seed's FC network written in NumPy alone: forward, stable "
                    "softmax cross-entropy, hand-written backward, SGD. Defaults: the seed FC's "
                    "settings (lr 0.1, batch 64, 5 epochs, Glorot-uniform init).")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training set (5)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (0.1)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (64)")
    p.add_argument("--seed", type=int, default=0, help="init and shuffling (0)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    p.add_argument("--threads", type=int, default=1,
                   help="NumPy BLAS threads (1: fastest for these small matrices)")
    p.add_argument("--twin", action="store_true",
                   help="also train the torch fc model from the same init on the same batches "
                        "(autograd + torch.optim.SGD) and compare: it tracks the NumPy net")
    p.add_argument("--json", action="store_true", help="end with one JSON object (the metrics)")
    p.set_defaults(func=scratch)

    p = sub.add_parser(
        "gradcheck", help="check the NumPy backward pass against autograd and finite differences",
        description="On one batch and one set of weights, in float64: the hand-written "
                    "gradients of the NumPy FC network against torch autograd (max relative "
                    "error must be < 1e-7) and against central finite differences on a sample of "
                    "weights (< 1e-5). Exits 1 when either check fails.")
    p.add_argument("--batch-size", type=int, default=32, help="training images in the batch (32)")
    p.add_argument("--seed", type=int, default=0, help="weights and the sampled weights (0)")
    p.add_argument("--samples", type=int, default=16,
                   help="finite-difference samples per parameter tensor (16)")
    p.add_argument("--eps", type=float, default=1e-5, help="finite-difference step (1e-5)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=gradcheck)


def _new_run_dir(out: Path | None, stem: str) -> Path:
    from mnistlab import runs
    from mnistlab.errors import UserError

    if out is None:
        return runs.new_run_dir(stem)
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a folder for the run")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} already holds files; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def loop(args: argparse.Namespace) -> int:
    from mnistlab.errors import UserError
    from mnistlab.mechanics.loop import CURVE_PNG, LoopConfig, LoopStart, run_loop

    config = LoopConfig(model=args.model, steps=args.steps, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, limit=args.limit, threads=args.threads,
                        refresh_seconds=args.refresh)
    config.validate()                     # bad flags fail before a folder is created
    run_dir = _new_run_dir(args.out, f"loop-{config.model}-s{config.seed}")
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
    except UserError:
        if not any(run_dir.iterdir()):   # refused before anything was written: leave no trace
            run_dir.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
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
    from mnistlab.mechanics.scratch import ScratchConfig, train_scratch
    from mnistlab.runs import HistoryRow
    from mnistlab.train.callbacks import epoch_line

    config = ScratchConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                           seed=args.seed, limit=args.limit, threads=args.threads,
                           twin=args.twin)
    config.validate()
    console.say(f"numpy FC (784-{config.hidden}-10, backward by hand): SGD lr {config.lr:g}, "
                f"batch {config.batch_size}, {config.epochs} epochs, seed {config.seed}")
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


def gradcheck(args: argparse.Namespace) -> int:
    from mnistlab.mechanics.gradcheck import gradcheck_mnist

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
    if args.json:
        console.emit_json(r.to_dict())
    return 0 if r.passed else 1
