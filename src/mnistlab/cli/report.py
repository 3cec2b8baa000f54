"""`mnistlab report`: the main job (train fc and cnn over seeds, the custom loop, the report)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mnistlab import console

# ReportConfig's fields given as flags, in --help's order; --out and --seeds are declared here
# (their defaults come from the environment and from --quick), --quick and --reuse are plain
# switches.
REPORT_FLAGS = ("first_seed", "epochs", "limit", "test_limit", "loop_steps", "threads",
                "device", "executor", "address")


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.report.defaults import QUICK_LIMIT, QUICK_LOOP_STEPS

    p = sub.add_parser(
        "report", help="reproduce the seed study: train, compare, write REPORT.md + report.html",
        description="Train the seed's FC and CNN models for several seeds, run the explicit "
                    "training loop, and write REPORT.md, a self-contained report.html, "
                    "report.json and figures/ into --out; the trained runs stay in <out>/runs/.")
    p.defer(_config_flags)               # ReportConfig's module imports torch
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 seed, 1 epoch, {QUICK_LIMIT:,} training images, "
                        f"{QUICK_LOOP_STEPS} loop iterations (flags given still win)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where REPORT.md, report.html, report.json, figures/, runs/ go "
                        "(default: $MNISTLAB_REPORT_DIR, else ./report)")
    p.add_argument("--reuse", action="store_true",
                   help="take finished runs in <out>/runs made with the same settings instead of "
                        "training them again (re-draws and re-writes the report in minutes)")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: headline numbers and paths")
    p.set_defaults(func=report)


def _config_flags(p: argparse.ArgumentParser) -> None:
    from mnistlab.cli import flags
    from mnistlab.report.build import DEFAULT_SEEDS, ReportConfig

    seeds = next(f for f in dataclasses.fields(ReportConfig) if f.name == "seeds")
    flags.add_option(p, "--seeds", int, meta=seeds.metadata,   # left out: None, decided below
                     shown_default=f"{DEFAULT_SEEDS}; 1 with --quick")
    flags.add_fields(p, ReportConfig, only=REPORT_FLAGS)


def report(args: argparse.Namespace) -> int:
    from mnistlab.cli import flags
    from mnistlab.data.specs import DATASETS
    from mnistlab.errors import UserError
    from mnistlab.paths import report_dir
    from mnistlab.report.build import DEFAULT_SEEDS, ReportConfig, build_report
    from mnistlab.sweep.report_hook import check_executor

    seeds = args.seeds if args.seeds is not None else (1 if args.quick else DEFAULT_SEEDS)
    out = args.out.expanduser().resolve() if args.out is not None else report_dir()
    cfg = ReportConfig(out=out, seeds=seeds, quick=args.quick, reuse=args.reuse,
                       **flags.given(args, ReportConfig, skip={"out", "seeds", "quick", "reuse"}))
    label = flags.label_for(ReportConfig)
    cfg.check(label)
    cfg.check_sizes(DATASETS["mnist"].counts["train"], DATASETS["mnist"].counts["test"], label)
    if cfg.executor != "local" or cfg.address is not None:
        if cfg.executor == "local":
            raise UserError("--address goes with --executor ray")
        check_executor(cfg.executor, cfg.address)
    result = build_report(cfg)
    meta, models = result["meta"], result["models"]
    console.say(f"report written in {meta['total_seconds']:.0f} s: {out / 'REPORT.md'} "
                f"and {out / 'report.html'}")
    if args.json:
        headline = {m: {"test_accuracy_mean": v["test_accuracy"]["mean"],
                        "test_accuracy_std": v["test_accuracy"]["std"]}
                    for m, v in models.items()}
        imp = result["comparison"].get("improvement", {})
        console.emit_json({
            "report_md": str(out / "REPORT.md"), "report_html": str(out / "report.html"),
            "report_json": str(out / "report.json"), "seeds": meta["seeds"],
            "models": headline, "improvement_points": 100 * imp["mean"] if imp else None,
            "total_seconds": meta["total_seconds"]})
    return 0
