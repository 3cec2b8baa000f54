"""`mnistlab train MODEL ...` and `mnistlab evaluate RUN`: parse, call mnistlab.train, print.

A training config is built in three layers: TrainConfig's defaults, then the preset (``seed``
when the model has one and no --preset is given), then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from mnistlab import console

# flag dest -> TrainConfig field; a flag left out (None) keeps the preset's or default value
_FLAGS = {
    "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
    "momentum": "momentum", "weight_decay": "weight_decay", "schedule": "schedule",
    "label_smoothing": "label_smoothing", "augment": "augment", "seed": "seed",
    "precision": "precision", "engine": "engine", "threads": "threads", "limit": "limit",
    "test_limit": "test_limit",
    "dataset": "dataset", "init": "init", "eval_batch_size": "eval_batch_size",
    "nesterov": "nesterov", "eps": "eps", "eval_each_epoch": "eval_each_epoch",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model; writes a run folder (config, weights, history, metrics)",
        description="Train MODEL and write runs/<name>/ (config.json, model.safetensors, "
                    "history.csv/json, metrics.json, a checkpoint after each epoch). Without "
                    "--preset, the model's `seed` preset (what the seed report ran) applies.")
    p.add_argument("model", metavar="MODEL", help="a model name (see `mnistlab models`)")
    p.add_argument("--preset", default=None, help="a named recipe: seed, ... (`mnistlab models`)")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--optimizer", help="sgd | adam | adamw | rmsprop")
    p.add_argument("--lr", type=float, help="learning rate (peak rate with --schedule onecycle)")
    p.add_argument("--momentum", type=float, help="sgd / rmsprop momentum")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum (sgd)")
    p.add_argument("--eps", type=float, help="adam / adamw / rmsprop epsilon (default 1e-7)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", help="constant | onecycle")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", help="none, or a kind of mnistlab.data.augment")
    p.add_argument("--seed", type=int, help="model init, batch order, augmentation")
    p.add_argument("--precision", help="fp32 | bf16 | auto (bf16 for conv nets on bf16 CPUs)")
    p.add_argument("--engine", help="fused (hand-written bf16 step for the cnn family) | "
                                    "autograd | auto (fused where it applies)")
    p.add_argument("--threads", type=int, help="torch threads (0: all cores)")
    p.add_argument("--limit", type=int, help="train on the first N images only")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--eval-each-epoch", action=argparse.BooleanOptionalAction, default=None,
                   help="test loss/accuracy after every epoch (default) or only at the end")
    p.add_argument("--dataset", help="mnist | fashion-mnist")
    p.add_argument("--init", help="keras (Glorot-uniform, zero biases; the seed) | torch")
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help='model settings as a JSON object, e.g. \'{"hidden": 256}\'')
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the run folder (default: a new folder under runs/ or $MNISTLAB_RUNS_DIR)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out DIR from its last finished epoch")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: test_accuracy, test_loss, run_dir, ...")
    p.set_defaults(func=train)

    p = sub.add_parser("evaluate", help="test loss and accuracy of a trained run",
                       description="Evaluate a run's model on its dataset's test set.")
    p.add_argument("run", metavar="RUN", nargs="?",
                   help="a run folder, or a run name under runs/")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", default=None,
                   help="average the probabilities of these runs (and RUN, if given)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=evaluate)


def build_config(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Any:
    """TrainConfig from defaults (or a saved run's config), the preset, then the given flags."""
    from mnistlab.cli.models import parse_model_config
    from mnistlab.train.config import TrainConfig
    from mnistlab.train.presets import has_preset, preset_overrides

    if saved is not None:
        values = dict(saved)
    else:
        values = {"model": args.model}
        preset = args.preset or ("seed" if has_preset("seed", args.model) else None)
        if preset is not None:
            values.update(preset_overrides(preset, args.model), preset=preset)
    if args.preset is not None:
        values["preset"] = args.preset
    for dest, name in _FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            values[name] = value
    if args.model_config is not None:
        values["model_config"] = parse_model_config(args.model_config)
    return TrainConfig.from_dict(values)


def _run_dir(args: argparse.Namespace, config: Any) -> Path:
    from mnistlab import runs
    from mnistlab.errors import UserError

    if args.out is None:
        return runs.new_run_dir(f"{config.model}-{config.preset or 'custom'}-s{config.seed}")
    out = args.out.expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a folder for the run")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} already holds files; pass --resume to continue that run, "
                        "or choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mnistlab import runs
    from mnistlab.errors import UserError
    from mnistlab.train.callbacks import KerasLogger, TensorBoardLogger, tensorboard_available
    from mnistlab.train.config import validate
    from mnistlab.train.data import load_tensors
    from mnistlab.train.fit import TrainingInterrupted, fit

    if args.resume:
        if args.out is None:
            raise UserError("--resume needs --out DIR, the folder of the run to continue")
        run_dir = runs.resolve_resumable(args.out)
        saved = runs.read_config(run_dir)
        if saved.model != args.model:
            raise UserError(f"{run_dir} is a run of model {saved.model!r}, "
                            f"not {args.model!r}")
        config = build_config(args, asdict(saved.train) if saved.train is not None else None)
    else:
        config = build_config(args)
        validate(config)
        load_tensors(config)       # an unknown or missing dataset fails before anything is written
        run_dir = _run_dir(args, config)

    callbacks = [KerasLogger()]
    if tensorboard_available():
        callbacks.append(TensorBoardLogger(run_dir))
    try:
        result = fit(config, run_dir, resume=args.resume, callbacks=callbacks,
                     command=shlex.join(["mnistlab", *sys.argv[1:]]))
    except TrainingInterrupted as exc:
        resume = shlex.join(["mnistlab", "train", config.model, "--out", str(run_dir),
                             "--resume"])
        sys.stderr.write(f"\ninterrupted: {exc.epochs_done} of {exc.epochs} epochs are saved "
                         f"in {run_dir}; resume with: {resume}\n")
        return 130
    if args.json:
        console.emit_json(result.metrics.to_dict())
    else:
        m = result.metrics
        console.say(f"test accuracy {m.test_accuracy:.4f}, loss {m.test_loss:.4f}; "
                    f"{m.train_seconds:.1f} s of training "
                    f"({m.images_per_second or 0:,.0f} images/s); run: {run_dir}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.errors import UserError

    if args.ensemble is not None:
        return _evaluate_ensemble(args)
    if args.run is None:
        raise UserError("evaluate needs RUN (a run folder or name), or --ensemble RUN RUN ...")
    from mnistlab.train.callbacks import eval_line
    from mnistlab.train.evaluation import evaluate_run

    run_dir = _best_or(args.run)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_run(run_dir)
    console.say(eval_line({"steps": result.steps, "seconds": result.seconds,
                           "test_accuracy": result.test_accuracy,
                           "test_loss": result.test_loss}))
    if args.json:
        console.emit_json(result.to_dict())
    return 0


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.train.ensemble import evaluate_ensemble

    if args.threads:
        torch.set_num_threads(args.threads)
    members = ([args.run] if args.run else []) + list(args.ensemble)
    result = evaluate_ensemble(members)
    for m in result.members:
        console.say(f"{m.run_dir}: test accuracy {m.test_accuracy:.4f}")
    console.say(f"ensemble of {len(members)}: test accuracy {result.test_accuracy:.4f}, "
                f"loss {result.test_loss:.4f} (members' mean "
                f"{result.mean_member_accuracy:.4f})")
    if args.json:
        console.emit_json(result.to_dict())
    return 0


def _best_or(run: str) -> Path:
    from mnistlab import runs

    if run == "best" and not Path(run).exists():
        return runs.best_run(dataset=None)
    return runs.resolve_run(run)
