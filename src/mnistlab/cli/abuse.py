"""`mnistlab serve-abuse`: a hostile load on a real server, and whether it came through."""

from __future__ import annotations

import argparse
import sys

JSON_HELP = "print one JSON object as the last line of standard output"


def register(subparsers: argparse._SubParsersAction) -> None:
    a = subparsers.add_parser(
        "serve-abuse", help="hostile clients against `mnistlab serve`: bombs, garbage, "
                            "slow and idle connections, hang-ups; memory and log checked",
        description="Start `mnistlab serve` on 127.0.0.1 and send, at once, good requests, "
                    "decompression-bomb PNGs, large accepted pictures, garbage, hang-ups "
                    "mid-upload, idle connections and slow headers and bodies. Print requests, "
                    "status codes, p50/p99 latency, the server's memory before / at its peak / "
                    "after it settles (VmRSS, VmHWM) and whether each goal was met: no 5xx, no "
                    "traceback in the log, every bad body a 4xx JSON answer, good drawings "
                    "read right, good clients served while slow ones hang, peak under 1 GB, "
                    "back within 50 MB. The full size "
                    "takes several minutes.")
    a.add_argument("run", nargs="?", metavar="RUN",
                   help="a run or an .onnx file (default: the best run)")
    a.add_argument("--size", choices=["small", "full"], default="full",
                   help="small: the tests' few seconds; full (default): 5,000 requests from "
                        "16 clients, 10 s / 30 s deadlines, a minute to settle")
    a.add_argument("--requests", type=int, metavar="N",
                   help="HTTP requests in all (default: 5,000 at the full size, 60 small)")
    a.add_argument("--clients", type=int, metavar="N",
                   help="concurrent HTTP clients (default: 16 full, 4 small)")
    a.add_argument("--workers", type=int, metavar="N",
                   help="server processes (`mnistlab serve --workers N`, default 1)")
    a.add_argument("--seed", type=int, default=0, help="shuffles the requests (default 0)")
    a.add_argument("--json", action="store_true", help=JSON_HELP)
    a.set_defaults(func=cmd_abuse)


def cmd_abuse(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.errors import UserError
    from mnistlab.perf.serve_abuse import run_abuse, summary_lines

    if args.run is None:
        from mnistlab import runs

        model = str(runs.best_run())
    else:
        model = args.run
    for name in ("requests", "clients", "workers"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            raise UserError(f"--{name} takes 1 to 100000, not {value}")
    r = run_abuse(model, size=args.size, seed=args.seed, requests=args.requests,
                  clients=args.clients, workers=args.workers,
                  progress=lambda m: sys.stderr.write(f"... {m}\n"))
    for line in summary_lines(r):
        console.say(line)
    if args.json:
        console.emit_json(r)
    return 0 if r["ok"] else 1
