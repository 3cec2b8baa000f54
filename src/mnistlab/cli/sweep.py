"""`mnistlab sweep MODEL ...`: many trainings over seeds and settings, on Ray (a local one or a
cluster), each an ordinary run folder; sweep.json and summary.md/csv/png beside them.

Ray is an optional extra; it is imported only once the command runs (mnistlab.sweep.executor).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab import console
from mnistlab.checks import DEVICES

if TYPE_CHECKING:
    from mnistlab.sweep.record import SweepRecord


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="train over seeds and settings on Ray; a summary with confidence intervals",
        description="Train every MODEL for every combination of --grid settings and every seed, "
                    "as Ray Tune trials (a local Ray on this machine, or a cluster with "
                    "--address). Each trial is a run folder under --out; sweep.json, summary.md, "
                    "summary.csv and summary.png sit beside them. A trial whose worker dies is "
                    "retried from its last finished epoch; an interrupted sweep continues with "
                    "--resume DIR.")
    p.add_argument("models", metavar="MODEL", nargs="*", help="model names (`mnistlab models`)")
    p.add_argument("--preset", default=None,
                   help="recipe for every model (default: each model's seed preset)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, metavar="N",
                       help="seeds 0 .. N-1 (default 1)")
    seeds.add_argument("--seed-list", default=None, metavar="S,S,...", help="these seeds")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a training setting and its values (repeat for more settings): lr, "
                        "batch_size, epochs, optimizer, precision, augment, ...")
    p.add_argument("--search", default="grid", help="grid: every combination (default) | "
                                                    "random: --samples of them")
    p.add_argument("--samples", type=int, default=0, help="combinations a random search draws")
    p.add_argument("--search-seed", type=int, default=0, help="which ones it draws")
    p.add_argument("--scheduler", default="none",
                   help="none (default) | asha: stop trials that trail after an epoch")
    p.add_argument("--concurrency", type=int, default=None, metavar="K",
                   help="trials at once (default: every CPU slot)")
    p.add_argument("--threads-per-trial", type=int, default=1, metavar="T",
                   help="torch threads (= Ray CPUs) per trial (default 1)")
    # the same choices as TrainConfig.device (mnistlab.checks.DEVICES: torch-free)
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where every trial trains: auto (cuda, else mps, else cpu), cpu, cuda "
                        "or mps (default auto; on Ray a trial sees a GPU only with "
                        "--gpus-per-trial or --device cuda)")
    p.add_argument("--gpus-per-trial", type=float, default=None, metavar="G",
                   help="Ray GPUs per trial, e.g. 0.25 to share one GPU among four trials "
                        "(default 1 with --device cuda, else 0)")
    p.add_argument("--max-failures", type=int, default=3,
                   help="retries of a trial whose worker died (default 3)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="epochs per trial (default: the preset's)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N images (default: all)")
    p.add_argument("--test-limit", type=int, default=None, metavar="N",
                   help="test on the first N images (default: all)")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="join this Ray cluster (default: start a local Ray for the sweep)")
    p.add_argument("--executor", default="ray",
                   help="ray (default) | local: one trial after another in this process")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the sweep folder; with --address, on storage every node mounts at "
                        "the same path (default: a new folder under runs/)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the sweep in DIR: keep finished trials, resume the others")
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: trials and groups")
    p.set_defaults(func=sweep)


def _seeds(args: argparse.Namespace) -> list[int]:
    from mnistlab.errors import UserError

    if args.seed_list is not None:
        try:
            return [int(s) for s in args.seed_list.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--seed-list {args.seed_list!r}: expected whole numbers, "
                            "e.g. 0,1,2") from None
    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    return list(range(args.seeds if args.seeds is not None else 1))


def build_spec(args: argparse.Namespace):  # -> SweepSpec (imported lazily)
    from mnistlab.errors import UserError
    from mnistlab.models import available
    from mnistlab.sweep.spec import SweepSpec, parse_grid

    if not args.models:
        raise UserError("sweep needs at least one MODEL (or --resume DIR)")
    for m in args.models:
        if m not in available():
            raise UserError(f"unknown model {m!r}; choose from: {', '.join(available())}")
    grid = parse_grid(args.grid)
    for flag, value in (("--epochs", args.epochs), ("--limit", args.limit),
                        ("--test-limit", args.test_limit)):
        if value is not None and value < 1:     # 0 would silently mean "the default"
            raise UserError(f"{flag} must be a whole number >= 1, got {value} (leave it out "
                            "for the default)")
        key = flag[2:].replace("-", "_")
        if value is not None and key in grid:   # the grid's values would win without a word
            raise UserError(f"{flag} and --grid {key}=... both set {key}; give it once")
    spec = SweepSpec(models=list(args.models), preset=args.preset, seeds=_seeds(args),
                     grid=grid, search=args.search, samples=args.samples,
                     search_seed=args.search_seed, scheduler=args.scheduler,
                     concurrency=args.concurrency, threads_per_trial=args.threads_per_trial,
                     max_failures=args.max_failures, limit=args.limit or 0,
                     test_limit=args.test_limit or 0, epochs=args.epochs or 0,
                     device=args.device,
                     gpus_per_trial=args.gpus_per_trial)
    spec.validate()
    return spec


def check_device(spec, executor: str, address: str | None) -> None:
    """A --device this machine lacks is one line before anything starts, when the trials run
    here (--executor local, or a local Ray); a cluster's nodes are checked by Ray itself (a
    trial asking for GPUs waits for a node that has them)."""
    from mnistlab.train.device import resolve_device

    if executor == "local" or address is None:
        resolve_device(spec.device)


def make_executor(kind: str, spec, address: str | None):
    from mnistlab.errors import UserError
    from mnistlab.sweep.executor import LocalExecutor, RayExecutor, RaySettings

    if kind not in ("local", "ray"):
        raise UserError(f"unknown --executor {kind!r}; choose ray or local")
    if kind == "local" and address is not None:
        raise UserError("--address goes with --executor ray")
    if kind == "local" and spec.gpus_per_trial:        # it was ignored in silence
        raise UserError("--gpus-per-trial goes with --executor ray (Ray hands each trial its "
                        "GPUs); the local executor runs trials on --device")
    if address is None:            # the trials run here: refused now, not after Ray's start
        from mnistlab.checks import cores

        if spec.threads_per_trial > cores():   # train asks --threads-oversubscribe for this
            where = ("the local executor runs its trials here" if kind == "local" else
                     "a local Ray runs its trials here; --address joins a larger cluster")
            raise UserError(f"--threads-per-trial {spec.threads_per_trial} is more than this "
                            f"machine's {cores()} cores; {where}")
        if kind == "ray" and spec.gpus() > 0:
            import torch

            if not torch.cuda.is_available():
                raise UserError(f"trials ask for {spec.gpus():g} GPU each and this machine "
                                "has none; leave out --gpus-per-trial, or join a cluster "
                                "with GPUs through --address")
    if kind == "local":
        return LocalExecutor()
    epochs = max((t.config.epochs for t in spec.trials()), default=1)
    return RayExecutor(RaySettings(address=address, threads_per_trial=spec.threads_per_trial,
                                   concurrency=spec.concurrency, max_failures=spec.max_failures,
                                   scheduler=spec.scheduler, max_epochs=epochs,
                                   gpus_per_trial=spec.gpus()))


def sweep(args: argparse.Namespace) -> int:
    import sys

    from mnistlab import runs
    from mnistlab.errors import UserError
    from mnistlab.sweep import driver, record
    from mnistlab.train.data import load_tensors

    if args.resume is not None:
        if args.models or args.grid or args.out is not None:
            raise UserError("--resume DIR takes the sweep's own settings; give no MODEL, "
                            "--grid or --out with it")
        root = args.resume.expanduser().resolve()
        spec = record.read(root).spec
        done = driver.ended(root)
        if done is not None:             # Ray started (some 15 s) to do nothing
            console.say(f"every trial in {root} has ended: nothing to resume")
            return _finished(done, root, args)
    else:
        spec = build_spec(args)
        for trial in spec.trials()[:1]:
            load_tensors(trial.config)   # an unknown or missing dataset fails before Ray starts
        if args.out is not None:
            driver.check_folder(args.out)
    check_device(spec, args.executor, args.address)
    executor = make_executor(args.executor, spec, args.address)
    try:
        if args.resume is not None:
            rec, trials = driver.load_record(root, executor)
        else:
            if args.out is None:
                root = runs.new_run_dir(f"sweep-{'-'.join(spec.models)}")
            else:
                root = driver.prepare_folder(args.out)
            try:
                executor.check_storage(root)
            except KeyboardInterrupt:      # nothing of the sweep written: no empty folder left
                with contextlib.suppress(OSError):
                    root.rmdir()
                raise
            rec, trials = driver.new_record(spec, executor)
        console.say(f"sweep: {len(trials)} trials ({len(spec.models)} model(s) x "
                    f"{len(spec.settings_list())} setting(s) x {len(spec.seeds)} seed(s)) on "
                    f"{executor.name} with {executor.slots()} slot(s); folder {root}")
        try:
            rec = driver.run(rec, trials, root, executor, quiet=args.quiet)
        except driver.SweepInterrupted as exc:
            again = ["mnistlab", "sweep", "--resume", str(root)]
            if executor.name == "local":   # the default is ray: say where it ran
                again += ["--executor", "local"]
            elif args.address:
                again += ["--address", args.address]
            sys.stderr.write(f"\ninterrupted: {exc}; continue with: {shlex.join(again)}\n")
            return 130
    finally:
        executor.close()
    return _finished(rec, root, args)


def _finished(rec: SweepRecord, root: Path, args: argparse.Namespace) -> int:
    """A sweep's end: its best group, --json's object, and exit 1 where trials failed."""
    import sys

    from mnistlab.sweep import driver
    from mnistlab.sweep.summary import groups

    best = groups(rec)
    if best:
        g = best[0]
        console.say(f"best: {g.label()}: {100 * g.mean_test_accuracy:.2f}% "
                    f"(n={g.n}); summary: {root / 'summary.md'}")
    if args.json:
        console.emit_json(driver.result_json(rec, root))
    failed = rec.counts()["failed"]
    if failed:                        # a check failed (README's exit 1): say so, not only in JSON
        sys.stderr.write(f"{failed} of {len(rec.trials)} trials failed; their errors are in "
                         f"{root / 'summary.md'}\n")
        return 1
    return 0
