"""`mnistlab calibrate RUN`: fit (again) a run's confidence and its "unsure" flags on the
validation images it held out, as training does at its end."""

from __future__ import annotations

import argparse

from mnistlab import console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit a run's temperature and 'unsure' flags on its held-out images",
        description="Fit the temperature, the 'not confident' threshold and where the "
                    "training digits' features lie ('unlike the digits it learnt') on the "
                    "validation images RUN held out (train --validation N; the robust preset "
                    "does), and write calibration.json and typicality.safetensors into RUN. "
                    "Training does this at its end; run it for a run trained before the "
                    "second flag existed. The test set is not read.")
    p.add_argument("run", metavar="RUN", help="a finished run folder (or its name)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=calibrate_run)


def calibrate_run(args: argparse.Namespace) -> int:
    from mnistlab import runs
    from mnistlab.errors import UserError
    from mnistlab.train.calibration import calibrate, save_calibration
    from mnistlab.train.data import load_tensors, load_validation
    from mnistlab.train.typicality import FIT_IMAGES

    run_dir = runs.resolve_run(args.run)
    config = runs.read_config(run_dir)
    if config.train is None or not config.train.validation:
        raise UserError(f"{run_dir} held out no validation images, so there is nothing to "
                        "calibrate on without the test set; train with --validation N")
    model = runs.load_model(run_dir)
    x_train, y_train, *_ = load_tensors(config.train)
    x_val, y_val = load_validation(config.train)
    with console.progress(total=len(x_val) + min(FIT_IMAGES, len(x_train)), unit="image",
                          desc="features of held-out and training images") as bar:
        calibration = calibrate(model, x_val, y_val, precision=config.precision,
                                x_fit=x_train, y_fit=y_train, on_progress=bar.update)
    save_calibration(run_dir, calibration)
    c, t = calibration, calibration.typicality
    console.say(f"{run_dir}: temperature {c.temperature:.3f}; 'not confident' below "
                f"{c.unsure_below:.3f} ({c.unsure_share:.1%} of {c.validation_images:,} "
                f"validation digits, {c.errors_flagged:.0%} of their errors)")
    if t is not None:
        console.say(f"  'unlike the digits it learnt': {t.far_share:.1%} of the validation "
                    f"digits (fitted on {t.fit_images:,} training images)")
    if args.json:
        console.emit_json({"run_dir": str(run_dir), **c.to_dict(),
                           "far_share": None if t is None else t.far_share,
                           "fit_images": None if t is None else t.fit_images})
    return 0
