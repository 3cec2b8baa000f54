"""`mnistlab evaluate-real [RUN]`: accuracy on digits from other sources, beside MNIST test."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistlab import console
from mnistlab.cli import flags

PARTS_HELP = "comma-separated parts of the set: uci, fonts, strokes (default: all available)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-real", help="accuracy on digits from other sources (other writers, fonts, "
                              "hand-drawn strokes), beside MNIST test",
        description="Run a model on mnistlab's other-source set (see mnistlab.data.realworld: "
                    "UCI handwritten digits by 43 other writers, 24 typefaces, digits drawn "
                    "stroke by stroke), through the same preprocessing as `mnistlab predict`, "
                    "and on numbers composed of those digits. None of it is used in training "
                    "or tuning.")
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="a run or saved ensemble folder (default: the best robust run, else "
                        "the best run)")
    p.add_argument("--parts", default=None, metavar="LIST", help=PARTS_HELP)
    p.add_argument("--numbers", type=int, default=200, metavar="N",
                   help="also read N composed 2-4 digit numbers (default 200; 0: none)")
    p.add_argument("--marks", action="store_true",
                   help="write a dot, colon or dash between two digits of each composed number "
                        "(06.12, 12:30, 42-7); a number counts as read whole only with its mark "
                        "in place")
    p.add_argument("--touching", action="store_true",
                   help="also read the same numbers with neighbouring digits running into "
                        "each other (their ink overlapping by a few pixels), to measure how "
                        "touching digits are cut apart (reported as touching_numbers)")
    p.add_argument("--unsure", action="store_true",
                   help="also measure how often the run's calibrated 'unsure' flag fires: on "
                        "MNIST test digits, and on letters and scribbles (needs a run trained "
                        "with --validation, as the robust preset is)")
    flags.add_device(p)
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=evaluate_real)


def evaluate_real(args: argparse.Namespace) -> int:
    from mnistlab import runs
    from mnistlab.data import load_dataset
    from mnistlab.data.realworld import PARTS, missing_parts, non_digits, realworld_set
    from mnistlab.errors import UserError
    from mnistlab.inference.ensemble import ENSEMBLE, EnsemblePredictor
    from mnistlab.inference.predict import load_predictor
    from mnistlab.inference.realworld import evaluate_realworld, unsure_rates
    from mnistlab.train.device import resolve_device

    if args.numbers < 0 or args.numbers > 100_000:
        raise UserError(f"--numbers must be between 0 and 100000, got {args.numbers}")
    if args.numbers == 0 and (args.marks or args.touching):
        flag = "--marks" if args.marks else "--touching"
        raise UserError(f"{flag} changes the composed numbers, and --numbers 0 composes none; "
                        "give --numbers N (default 200)")
    parts = list(dict.fromkeys(p.strip() for p in args.parts.split(",") if p.strip())) \
        if args.parts else PARTS
    if not parts:
        raise UserError(f"--parts {args.parts!r} names no part; choose from "
                        f"{', '.join(PARTS)}")
    lacking = [p for p in missing_parts() if p in parts]
    if lacking and args.parts:
        raise UserError(f"part {', '.join(lacking)} needs scikit-learn, which carries the UCI "
                        "digits: pip install 'mnistlab[realworld]'")
    if lacking:
        console.say(f"note: part {', '.join(lacking)} skipped (pip install "
                    "'mnistlab[realworld]' adds it)")
    device = resolve_device(args.device)   # a missing GPU: one line before anything is read
    predictor = load_predictor(args.run, device=device)
    run_dir = Path(predictor.name)
    samples = realworld_set(parts)
    numbers = args.numbers * (2 if args.touching else 1)     # the touching ones read again
    with console.progress(total=len(samples) + numbers, desc="other-source set",
                          unit="picture") as bar:
        result = evaluate_realworld(predictor, samples, numbers=args.numbers,
                                    marks=args.marks, touching=args.touching,
                                    on_progress=bar.update)
    if isinstance(predictor, EnsemblePredictor):     # its figure is in ensemble.json
        mnist, measured_in = predictor.saved.test_accuracy, ENSEMBLE
    else:
        mnist, measured_in = runs.read_metrics(run_dir).test_accuracy, runs.METRICS
    unsure = None
    if args.unsure:
        rates = unsure_rates(predictor, load_dataset("mnist", "test")[0], non_digits())
        unsure = rates.to_dict()
    console.say(f"model: {run_dir}")
    for name, score in result.parts.items():
        console.say(f"  {name:<8} {score.accuracy:7.2%}  ({score.correct}/{score.images}, "
                    f"{score.refused} refused)")
    console.say(f"  {'all':<8} {result.accuracy:7.2%}  ({result.images} pictures)")
    for name, n in (("numbers", result.numbers), ("touching", result.touching_numbers)):
        if n is not None:
            console.say(f"  {name:<8} {n.accuracy:7.2%}  ({n.read_whole}/{n.numbers} read whole"
                        f"{', marks included' if n.marks else ''}; "
                        f"{n.right_count} split into the right number of digits"
                        + (f"; {n.marks_right} with the mark found as written)" if n.marks
                           else ")"))
            console.say("           by part: " + ", ".join(
                f"{part} {read}/{seen}" for part, (read, seen) in n.parts.items()))
    if result.touching_numbers is not None:
        console.say("           (touching: the same numbers, neighbouring digits touching)")
    if isinstance(mnist, float):
        console.say(f"  MNIST test {mnist:.2%} ({measured_in})")
    if unsure is not None:
        console.say("  flagged unsure: " + ", ".join(f"{k} {v:.1%}" for k, v in unsure.items())
                    + " (non-digits: flagged or refused as blank)")
    if args.json:
        console.emit_json({"run_dir": str(run_dir), "mnist_test_accuracy": mnist,
                           **result.to_dict(), "unsure": unsure})
    return 0
