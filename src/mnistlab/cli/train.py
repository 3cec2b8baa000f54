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

from mnistlab import checks, console

# TrainConfig's fields that are not generated flags: MODEL is positional, --model-config takes
# JSON and --preset picks the layer below the flags.
NOT_FLAGS = {"model", "model_config", "preset"}


def _train_config_flags(p: argparse.ArgumentParser) -> None:
    from mnistlab.cli import flags
    from mnistlab.train.config import TrainConfig

    flags.add_fields(p, TrainConfig, skip=NOT_FLAGS)


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.cli import flags

    p = sub.add_parser(
        "train", help="train a model; writes a run folder (config, weights, history, metrics)",
        description="Train MODEL and write runs/<name>/ (config.json, model.safetensors, "
                    "history.csv/json, metrics.json, a checkpoint after each epoch). Without "
                    "--preset, the model's `seed` preset (what the seed report ran) applies; "
                    "a flag given overrides the preset. Every default shown is TrainConfig's.")
    p.add_argument("model", metavar="MODEL", help="a model name (see `mnistlab models`)")
    p.add_argument("--preset", default=None, help="a named recipe: seed, ... (`mnistlab models`)")
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help='model settings as a JSON object, e.g. \'{"hidden": 256}\'')
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the run folder (default: a new folder under runs/ or $MNISTLAB_RUNS_DIR)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out DIR from its last finished epoch")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: test_accuracy, test_loss, run_dir, ...")
    p.defer(_train_config_flags)          # TrainConfig's module imports torch
    p.set_defaults(func=train)

    p = sub.add_parser("evaluate", help="test loss and accuracy of a trained run",
                       description="Evaluate a run's model on its dataset's test set.")
    p.add_argument("run", metavar="RUN", nargs="?",
                   help="a run folder, or a run name under runs/")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", default=None,
                   help="average the probabilities of these runs (and RUN, if given); one "
                        "run that held out a validation split: its test-time shifts and "
                        "temperature chosen there")
    p.add_argument("--select", choices=checks.ENSEMBLE_SELECTIONS, default="auto",
                   help="--ensemble: validation chooses members, weights, test-time shifts "
                        "and temperature on the validation split the runs held out, then "
                        "reads the test set once; none averages them all; auto: validation "
                        "when every run held out the same split (default: auto)")
    flags.add_option(p, "--threads", int, default=0,
                     meta={"help": "torch threads (0: all cores)", "min": 0, "cores": True})
    # the same choices as TrainConfig.device (mnistlab.checks.DEVICES: torch-free)
    flags.add_device(p, "where to evaluate one run (the weights load on the CPU, then move; "
                        "--ensemble: the CPU)")
    p.add_argument("--save", type=Path, default=None, metavar="DIR",
                   help="--ensemble: write it to DIR (ensemble.json, and calibration.json when "
                        "chosen on validation), so that predict, serve and evaluate-real can "
                        "answer with it: `mnistlab predict DIR IMAGE`")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=evaluate)


def build_config(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Any:
    """TrainConfig from defaults (or a saved run's config), the preset, then the given flags."""
    from mnistlab.cli import flags
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
    values.update(flags.given(args, TrainConfig, skip=NOT_FLAGS))
    if args.model_config is not None:
        values["model_config"] = parse_model_config(args.model_config)
    return TrainConfig.from_dict(values)


def train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mnistlab import runs
    from mnistlab.cli import flags
    from mnistlab.errors import UserError
    from mnistlab.folders import claim, holds_nothing_of_value, new_run_folder, training_in
    from mnistlab.train.callbacks import KerasLogger, TensorBoardLogger, tensorboard_available
    from mnistlab.train.config import TrainConfig, validate, validate_sizes
    from mnistlab.train.data import load_tensors
    from mnistlab.train.device import NO_NATIVE_BF16, native_bf16, resolve_device
    from mnistlab.train.fit import TrainingInterrupted, fit
    from mnistlab.train.resume import check_resumable

    resume = args.resume
    if resume and args.out is None:
        raise UserError("--resume needs --out DIR, the folder of the run to continue")
    out = args.out.expanduser() if args.out is not None else None
    if resume and out is not None and out.is_dir() and not (out / runs.CONFIG).exists() \
            and holds_nothing_of_value(out):
        # interrupted before even its config.json was written: there is nothing to resume,
        # and nothing to lose by starting afresh
        sys.stderr.write(f"note: {args.out} holds no run yet; training it from the first "
                         "epoch\n")
        resume = False
    created = False                   # whether this command made the run folder
    if resume:
        run_dir = claim(runs.resolve_resumable(args.out))   # not while another trains there
        saved = runs.read_config(run_dir)
        if saved.model != args.model:
            raise UserError(f"{run_dir} is a run of model {saved.model!r}, "
                            f"not {args.model!r}")
        config = build_config(args, asdict(saved.train) if saved.train is not None else None)
        check_resumable(config, run_dir)    # changed settings: refused before any note
        progress = runs.run_progress(run_dir)
        if progress is not None and progress.finished:
            # trained again from its last epoch, it would rewrite its weights and metrics
            # (the new thread count beside the old speed) for nothing
            metrics = runs.read_metrics(run_dir)
            console.say(f"{run_dir} finished all {progress.epochs_done} epochs (test accuracy "
                        f"{metrics.test_accuracy:.4f}); nothing to resume, nothing rewritten")
            if args.json:
                console.emit_json(metrics.to_dict())
            return 0
        if not (run_dir / runs.CHECKPOINT).exists():
            sys.stderr.write(f"note: no epoch of {run_dir} was saved; training it from the "
                             "first epoch with its recorded settings\n")
    else:
        config = build_config(args)
        label = flags.label_for(TrainConfig, positional={"model": "MODEL"})
        validate(config, label)
        resolve_device(config.device)       # --device cuda without one fails before any write
        # an unknown or missing dataset, or a batch larger than the data, fails before anything
        # is written
        x_train, _, x_test, _ = load_tensors(config)
        validate_sizes(config, len(x_train), len(x_test), label)
        created = out is None or not out.exists()
        run_dir = new_run_folder(args.out, f"{config.model}-{config.preset or 'custom'}"
                                           f"-s{config.seed}", resume_hint=True)

    if config.precision == "bf16" and resolve_device(config.device).type == "cpu" \
            and not native_bf16("cpu"):
        sys.stderr.write(f"note: {NO_NATIVE_BF16}, so bf16 is emulated and trains far slower "
                         "than fp32; --precision auto picks fp32 here\n")
    callbacks = [KerasLogger()]
    if tensorboard_available():
        callbacks.append(TensorBoardLogger(run_dir))
    # refused or diverged before its first epoch was saved: nothing half-done stays behind
    # (a run with saved epochs keeps them, and the message says where)
    try:
        with training_in(run_dir, created=created, fresh=not resume):
            result = fit(config, run_dir, resume=resume, callbacks=callbacks,
                         command=shlex.join(["mnistlab", *sys.argv[1:]]))
    except KeyboardInterrupt as exc:
        if not (run_dir / runs.CONFIG).exists():    # a fresh run stopped before its first epoch
            sys.stderr.write("\ninterrupted before the first epoch was saved; nothing is "
                             "kept\n")
            return 130
        again = shlex.join(["mnistlab", "train", config.model, "--out", str(run_dir),
                            "--resume"])
        saved = (f"{exc.epochs_done} of {exc.epochs} epochs are saved in {run_dir}"
                 if isinstance(exc, TrainingInterrupted) else
                 f"before training began; {run_dir} is as it was")
        sys.stderr.write(f"\ninterrupted: {saved}; resume with: {again}\n")
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
    from mnistlab.train.device import resolve_device

    device = resolve_device(args.device)    # --device cuda without one: refused, ensemble too
    if args.ensemble is not None:
        return _evaluate_ensemble(args)
    if args.save is not None:
        raise UserError("--save writes an ensemble; give it with --ensemble RUN RUN ...")
    if args.select != "auto":         # asked for, it would be ignored: one run is not chosen
        raise UserError("--select chooses an ensemble's members; give it with --ensemble "
                        "RUN RUN ...")
    if args.run is None:
        raise UserError("evaluate needs RUN (a run folder or name), or --ensemble RUN RUN ...")
    from mnistlab.train.callbacks import eval_line
    from mnistlab.train.evaluation import evaluate_run, load_run

    _refuse_saved_ensemble(args.run)
    run_dir = _best_or(args.run)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_run(load_run(run_dir, device))
    _note_if_unfinished(result.run.progress)
    console.say(eval_line({"steps": result.steps, "seconds": result.seconds,
                           "test_accuracy": result.test_accuracy,
                           "test_loss": result.test_loss}))
    # which model, on what: `evaluate best` named neither
    chosen = " (the best finished run)" if args.run == "best" else ""
    console.say(f"{result.run.dataset} test set, {result.test_images:,} images; "
                f"run: {run_dir}{chosen}")
    if args.json:
        console.emit_json(result.to_dict())
    return 0


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.inference.ensemble import check_ensemble_folder, save_ensemble
    from mnistlab.train.ensemble import evaluate_ensemble

    if args.threads:
        torch.set_num_threads(args.threads)
    members = ([args.run] if args.run else []) + list(args.ensemble)
    _refuse_repeated(members)
    _check_finished(members, saving=args.save is not None)
    if args.save is not None:               # before the work: a bad folder is one line
        check_ensemble_folder(args.save)
    result = evaluate_ensemble(members, select=args.select)
    protocol = result.protocol
    for c in protocol.candidates:
        console.say(f"{c.run_dir}: validation accuracy {c.validation_accuracy:.4f} "
                    f"({c.validation_accuracy_shifted:.4f} with shifts)")
    if protocol.selection == "validation":
        console.say(f"chosen on {protocol.validation_images:,} validation images: "
                    f"{len(result.members)} of {len(protocol.candidates)} runs, "
                    f"shifts {'on' if len(protocol.shifts) > 1 else 'off'}, "
                    f"T = {protocol.temperature:.3f}, validation accuracy "
                    f"{protocol.validation_accuracy:.4f}")
    else:
        sys.stderr.write(f"note: {protocol.note}\n")
    # with shifts chosen, each member is read with them too: not the figure of its own run
    shifted = " with the chosen shifts" if len(protocol.shifts) > 1 else ""
    for m in result.members:
        console.say(f"{m.run_dir}: weight {m.weight:.2f}, test accuracy{shifted} "
                    f"{m.test_accuracy:.4f}")
    console.say(f"ensemble of {len(result.members)}: test accuracy {result.test_accuracy:.4f}, "
                f"loss {result.test_loss:.4f} (members' mean{shifted} "
                f"{result.mean_member_accuracy:.4f}; test set read {protocol.test_passes}x)")
    saved = None
    if args.save is not None:
        saved = save_ensemble(result, args.save)
        console.say(f"saved: {saved} (answer with it: `mnistlab predict {saved} IMAGE`)")
    if args.json:
        console.emit_json(result.to_dict() | {"saved": str(saved) if saved else None})
    return 0


def _refuse_repeated(members: list[str]) -> None:
    """The same run named twice would count double in a plain average: one line instead."""
    from mnistlab.errors import UserError
    from mnistlab.runs.files import locate

    seen: dict[Path, str] = {}
    for name in members:
        path = locate(name).resolve()
        if path in seen:
            raise UserError(f"--ensemble names {path} twice ({seen[path]!r} and {name!r}); "
                            "give each run once (a weight comes from --select validation)")
        seen[path] = name


def _check_finished(members: list[str], *, saving: bool) -> None:
    """A member still training (or stopped) is measured as its last epoch left it: a note, or
    with --save a one-line refusal, since a saved ensemble reads its members' weights as they
    are when it answers, and a run that trains on would no longer be the one measured."""
    from mnistlab import runs
    from mnistlab.errors import UserError

    for name in members:
        progress = runs.run_progress(runs.resolve_run(name))
        if progress is None or progress.finished:
            continue
        if saving:
            raise UserError(f"--save: {progress.run_dir} is unfinished ({progress.epochs_done} "
                            f"of {progress.epochs_planned} epochs), and a saved ensemble answers "
                            "with its members' weights as they are then; let it finish (or "
                            f"resume it: `{progress.resume_command()}`) and save again")
        _note_if_unfinished(progress)


def _refuse_saved_ensemble(run: str) -> None:
    """A saved ensemble's figure was read once when it was saved: say so rather than re-read."""
    from mnistlab.errors import UserError
    from mnistlab.inference.ensemble import find_ensemble, read_ensemble

    folder = find_ensemble(run)
    if folder is not None:
        saved = read_ensemble(folder)
        count = len(saved.members)
        raise UserError(f"{folder} is a saved ensemble of {count} run{'s' * (count != 1)} (test "
                        f"accuracy {saved.test_accuracy:.4f}, read once when it was saved); "
                        "predict, serve and evaluate-real take it as RUN, and `evaluate "
                        "--ensemble RUN...` measures its members again")


def _note_if_unfinished(progress: Any) -> None:
    """One ``note:`` line on stderr when a run used by name has not finished training."""
    if progress is not None and not progress.finished:
        sys.stderr.write(f"note: {progress.note()}\n")


def _best_or(run: str) -> Path:
    from mnistlab import runs

    if run == "best" and not Path(run).exists():
        return runs.best_run(dataset=None)
    return runs.resolve_run(run)
