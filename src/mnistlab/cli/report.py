"""`mnistlab report`: the main job (train fc and cnn over seeds, the custom loop, the report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistlab import console


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.report.build import DEFAULT_SEEDS, QUICK_LIMIT, QUICK_LOOP_STEPS

    p = sub.add_parser(
        "report", help="reproduce the seed study: train, compare, write REPORT.md + report.html",
        description="Train the seed's FC and CNN models for several seeds, run the explicit "
                    "training loop, and write REPORT.md, a self-contained report.html, "
                    "report.json and figures/ into --out; the trained runs stay in <out>/runs/.")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"trainings per model (default {DEFAULT_SEEDS}; 1 with --quick)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are N, N+1, ... (default 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 seed, 1 epoch, {QUICK_LIMIT:,} training images, "
                        f"{QUICK_LOOP_STEPS} loop iterations (flags given still win)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per training (default: 5)")
    p.add_argument("--limit", type=int, default=0,
                   help="train on the first N training images (default: all 60,000)")
    p.add_argument("--test-limit", type=int, default=0,
                   help="evaluate fc and cnn on the first N test images (default: all "
                        "10,000; the custom loop always uses all)")
    p.add_argument("--loop-steps", type=int, default=0,
                   help="custom-loop iterations (default: one full pass, 5,000)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where REPORT.md, report.html, report.json, figures/, runs/ go "
                        "(default: $MNISTLAB_REPORT_DIR, else ./report)")
    p.add_argument("--reuse", action="store_true",
                   help="take finished runs in <out>/runs made with the same settings instead of "
                        "training them again (re-draws and re-writes the report in minutes)")
    p.add_argument("--executor", default="local",
                   help="local: train the seeds here, one after another (default) | ray: "
                        "through `mnistlab sweep`'s machinery, in parallel (needs "
                        "'mnistlab[sweep]'); the same numbers for the same --threads")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="--executor ray: join this Ray cluster (default: a local Ray)")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON object: headline numbers and paths")
    p.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    from mnistlab.paths import report_dir
    from mnistlab.report import ReportConfig, build_report
    from mnistlab.report.build import DEFAULT_SEEDS

    seeds = args.seeds if args.seeds is not None else (1 if args.quick else DEFAULT_SEEDS)
    out = args.out.expanduser().resolve() if args.out is not None else report_dir()
    cfg = ReportConfig(out=out, seeds=seeds, first_seed=args.first_seed,
                       epochs=args.epochs, limit=args.limit, test_limit=args.test_limit,
                       loop_steps=args.loop_steps,
                       threads=args.threads, quick=args.quick, reuse=args.reuse,
                       executor=args.executor, address=args.address)
    if cfg.executor != "local" or cfg.address is not None:
        from mnistlab.errors import UserError
        from mnistlab.sweep.report_hook import check_executor

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
