"""`mnistlab predict | export | serve | bench-serve`: use a trained model on real images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.cli.extras import needs_extra

if TYPE_CHECKING:
    from mnistlab.inference.predict import NumberPrediction, Prediction

JSON_HELP = "print one JSON object as the last line of standard output"
# Load-test sizes beyond these measure the test machine's patience, not the server.
MAX_REQUESTS = 1_000_000
MAX_CLIENTS = 1024
THREADS_PER_PASS = {"min": 1, "cores": True}


def register(subparsers: argparse._SubParsersAction) -> None:
    from mnistlab.cli import flags

    p = subparsers.add_parser(
        "predict", help="classify pictures of digits (PNG/JPEG, photos included)",
        usage="mnistlab predict [RUN] IMAGE... [--top K] [--onnx MODEL.onnx] "
              "[--device D] [--debug-dir DIR] [--json]",
        description="Classify each picture: it is turned into a 28x28 MNIST-style image "
                    "(grayscale, ink white on black, cropped, scaled to 20x20, centred by "
                    "mass) and fed to the model. Without RUN, the best robust run under the runs "
                    "folders (runs/, report/runs/) is used, else the best finished run.")
    p.add_argument("items", nargs="+", metavar="RUN/IMAGE",
                   help="an optional run (folder or name) followed by one or more images")
    flags.add_option(p, "--top", int, default=3, meta={
        "help": "show the K likeliest digits", "min": 1, "max": 10, "metavar": "K"})
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="use an exported ONNX file (onnxruntime) instead of a run")
    flags.add_device(p, "where the run's model runs (--onnx: onnxruntime on the CPU)")
    p.add_argument("--debug-dir", metavar="DIR",
                   help="write the 28x28 image the model saw for each picture (PNG)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_predict)

    e = subparsers.add_parser(
        "export", help="export a run's model to ONNX and check it against PyTorch",
        description="Export with a dynamic batch dimension, then compare onnxruntime with "
                    "PyTorch on 1,000 MNIST test images (max |logit difference| <= 1e-4, "
                    "same accuracy). The file is replaced only by a model that passed: a "
                    "failed check or an interrupted export leaves what was there.")
    e.add_argument("run", metavar="RUN", help="a run folder or its name under the runs folder")
    e.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    e.add_argument("--out", metavar="FILE", help="where to write it (default RUN/model.onnx)")
    e.add_argument("--force", action="store_true",
                   help="replace --out even if it is not an ONNX model written by mnistlab")
    e.add_argument("--json", action="store_true", help=JSON_HELP)
    e.set_defaults(func=cmd_export)

    s = subparsers.add_parser(
        "serve", help="the draw-a-digit web app (and a JSON API) on this machine",
        description="Serve a page where you draw a digit and watch the model's ten "
                    "probabilities change as you draw. API: POST /api/predict, GET /healthz, "
                    "docs at /docs. Everything is served locally.")
    s.add_argument("run", nargs="?", metavar="RUN",
                   help="a run or saved ensemble (default: the best robust run, else the best)")
    s.add_argument("--onnx", metavar="MODEL.onnx", help="serve an ONNX file instead of a run")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    flags.add_option(s, "--port", int, default=8000, meta={"help": "port", "min": 1,
                                                           "max": 65535})
    flags.add_option(s, "--threads", int, default=1, meta={
        "help": "PyTorch threads per forward pass (1: a request is one image, and concurrent "
                "requests already use the cores)", **THREADS_PER_PASS})
    flags.add_option(s, "--header-timeout", float, default=10.0, meta={
        "help": "close a connection whose request headers are not complete S seconds after it "
                "opened or began its request", "above": 0, "max": 3600, "metavar": "S"})
    flags.add_option(s, "--body-timeout", float, default=30.0, meta={
        "help": "close a connection whose request body is not complete S seconds after its "
                "headers", "above": 0, "max": 3600, "metavar": "S"})
    flags.add_option(s, "--workers", int, default=1, meta={
        "help": "server processes, each with its own copy of the model", "min": 1,
        "max": 64})
    flags.add_device(s, "where the run's model runs, in every worker (--onnx: the CPU)")
    s.set_defaults(func=cmd_serve)

    b = subparsers.add_parser(
        "bench-serve", help="latency and throughput of predict, the web API and ONNX",
        description="Measure single-image latency in process and over HTTP (p50, p99), a load "
                    "of REQUESTS from CLIENTS concurrent clients on 127.0.0.1, and batch "
                    "throughput of PyTorch against onnxruntime.")
    b.add_argument("run", nargs="?", metavar="RUN", help="a run (default: the best one)")
    flags.add_option(b, "--requests", int, default=1000, meta={
        "help": "load-test requests", "min": 1, "max": MAX_REQUESTS})
    flags.add_option(b, "--clients", int, default=8, meta={
        "help": "concurrent clients", "min": 1, "max": MAX_CLIENTS})
    flags.add_option(b, "--threads", int, default=None, shown_default="one per core", meta={
        "help": "threads for PyTorch and onnxruntime alike", **THREADS_PER_PASS})
    b.add_argument("--workers", default="1", metavar="N[,N...]",
                   help="server processes for the HTTP figures; a list (1,2) repeats the load "
                        "test for each (default 1)")
    b.add_argument("--json", action="store_true", help=JSON_HELP)
    b.set_defaults(func=cmd_bench)


def _best_run() -> Path:
    from mnistlab import runs

    return runs.best_run(for_pictures=True)


def _unsure_flag(reading: Prediction | NumberPrediction) -> str:
    """"  UNSURE (not confident)" after an unsure answer, nothing after a sure one."""
    return f"  UNSURE ({reading.unsure_reason})" if reading.unsure else ""


def _uncalibrated_note(predictor: object) -> str:
    """Why nothing will be flagged unsure, in the terms of what answers."""
    from mnistlab.inference.ensemble import EnsemblePredictor  # torch: loaded when used
    if isinstance(predictor, EnsemblePredictor):
        return ("note: this ensemble was averaged without a validation split, so its confidence "
                "is not calibrated and nothing is flagged unsure (save one of runs trained with "
                "--validation N: evaluate --ensemble RUN... --save DIR)")
    if getattr(predictor, "backend", "") == "onnxruntime":
        folder = Path(predictor.name).parent  # type: ignore[attr-defined]
        return (f"note: no calibration.json beside this ONNX file (in {folder}), so its "
                "confidence is not calibrated and nothing is flagged unsure; an export into "
                "its run folder (the default) shares the run's, if the run was trained with "
                "--validation N")
    if _holds_out_validation(Path(predictor.name)):  # type: ignore[attr-defined]
        return (f"note: this run has no calibration.json yet, so its confidence is not "
                f"calibrated and nothing is flagged unsure; it holds out validation images: "
                f"`mnistlab calibrate {predictor.name}` fits one")  # type: ignore[attr-defined]
    return ("note: this run holds out no validation images, so its confidence is not "
            "calibrated and nothing is flagged unsure (train with --validation N)")


def _holds_out_validation(run_dir: Path) -> bool:
    """Whether the run at ``run_dir`` trained with a validation split (calibrate can fit it)."""
    from mnistlab import runs
    from mnistlab.errors import UserError

    try:
        train = runs.read_config(run_dir).train
    except UserError:
        return False
    return bool(train is not None and train.validation)


def _chosen(run: str | None, run_dir: Path | None = None) -> str:
    """How the model was chosen, for the "model:" line: named, or the best for pictures."""
    from mnistlab import runs

    if run is not None:
        return ""
    run_dir = run_dir or _best_run()
    preset = runs.read_metrics(run_dir).preset
    return ("the best robust run (trained for pictures people make): "
            if preset == runs.PICTURE_PRESET else "best available run: ")


def _looks_like_run(item: str) -> bool:
    """A run's or a saved ensemble's folder (``~`` expanded, as resolve_run does), or the
    name of one under the runs folder: a folder of pictures is not one."""
    from mnistlab import runs
    from mnistlab.inference.ensemble import ENSEMBLE
    from mnistlab.runs.files import locate

    path = locate(item)
    return path.is_dir() and any((path / f).is_file()
                                 for f in (runs.CONFIG, runs.WEIGHTS, ENSEMBLE))


def _missing_run_name(item: str) -> bool:
    """Whether ``item``, which is not a run, was meant as one: nothing by that name exists and
    it is not named as a picture (no image suffix), as a mistyped run name ("cnn6")."""
    from mnistlab.runs.files import locate

    return (not locate(item).exists()
            and Path(item).suffix.lower() not in {".png", ".jpg", ".jpeg"})


def _note_if_unfinished(run_dir: Path) -> None:
    from mnistlab import runs
    from mnistlab.cli.train import _note_if_unfinished as note

    note(runs.run_progress(run_dir))


def _run_description(run_dir: Path) -> str:
    from mnistlab import runs
    from mnistlab.errors import UserError

    try:
        acc = runs.read_metrics(run_dir).test_accuracy
    except UserError:
        acc = None
    return f"{run_dir.name}" + (f" (test accuracy {acc:.2%})" if isinstance(acc, float) else "")


@needs_extra("export")
def cmd_predict(args: argparse.Namespace) -> int:
    from mnistlab import atomic, console
    from mnistlab.errors import UserError
    from mnistlab.folders import output_folder
    from mnistlab.inference.ensemble import EnsemblePredictor
    from mnistlab.inference.predict import NumberPrediction, load_predictor, predict_files
    from mnistlab.inference.preprocess import to_png
    from mnistlab.train.device import resolve_device

    device = resolve_device(args.device)   # a missing GPU: one line before anything is read
    items = list(args.items)
    run = items.pop(0) if len(items) > 1 and _looks_like_run(items[0]) else None
    if run is None and len(items) > 1 and _missing_run_name(items[0]):
        # a mistyped run: answering with the best run instead would pass off another model
        from mnistlab.paths import runs_dir
        raise UserError(f"{items[0]}: no such run or picture (a run is a folder written by "
                        f"`mnistlab train`, or its name under {runs_dir()}; a picture is a PNG "
                        "or JPEG file)")
    if not items or (len(args.items) == 1 and _looks_like_run(items[0])):
        raise UserError("no image given: `mnistlab predict [RUN] IMAGE...` needs at least one "
                        "PNG or JPEG file")
    if args.onnx and run is not None:
        raise UserError("give either a RUN or --onnx, not both")
    if args.debug_dir:        # before any work: a folder that cannot be written is one line
        output_folder(args.debug_dir, "--debug-dir")
    # no RUN: the best finished run
    predictor = load_predictor(run, onnx=args.onnx, device=device)
    if args.onnx:
        console.say(f"model: {args.onnx} (onnxruntime)")
    elif isinstance(predictor, EnsemblePredictor):
        console.say(f"model: {predictor.describe()} [{predictor.name}]")
    else:
        run_dir = Path(predictor.name)
        if run_dir.is_dir():
            _note_if_unfinished(run_dir)
        console.say(f"model: {_chosen(run)}{_run_description(run_dir)} [{run_dir}]")

    results = predict_files(predictor, items, top=args.top)
    if predictor.calibration is None:
        console.say(_uncalibrated_note(predictor))
    failed = 0
    out = []
    for i, (path, res) in enumerate(zip(items, results, strict=True)):
        if isinstance(res, UserError):
            failed += 1
            # which picture: a blank one's "no ink found" does not name it by itself
            message = str(res) if str(res).startswith(path) else f"{path}: {res}"
            sys.stderr.write(f"error: {message}\n")
            out.append({"file": path, "error": message})
            continue
        digits = res.digits if isinstance(res, NumberPrediction) else [res]
        if isinstance(res, NumberPrediction):
            each = "  ".join(f"{d.digit} ({d.probability:.1%}{', unsure' if d.unsure else ''})"
                             for d in digits)
            console.say(f"{path}: number {res.number} ({res.probability:.1%} all right)"
                        f"{_unsure_flag(res)}   digits: {each}")
        else:
            tops = ", ".join(f"{d} {p:.1%}" for d, p in res.top)
            console.say(f"{path}: {res.digit} ({res.probability:.1%})"
                        f"{_unsure_flag(res)}   top {args.top}: {tops}")
        if res.notes:
            console.say(f"  note: {'; '.join(res.notes)}")
        if args.debug_dir:
            for k, d in enumerate(digits):
                part = f"-{k}" if len(digits) > 1 else ""
                target = Path(args.debug_dir) / f"{i:03d}-{Path(path).stem}{part}-28x28.png"
                atomic.write_bytes(target, to_png(d.pre.image))
        out.append(res.to_json())
    if args.debug_dir:
        console.say(f"the 28x28 images the model saw are in {args.debug_dir}")
    if args.json:
        console.emit_json({"model": predictor.name, "predictions": out})
    return 2 if failed else 0


@needs_extra("export")
def cmd_export(args: argparse.Namespace) -> int:
    from mnistlab import console, runs
    from mnistlab.folders import output_file
    from mnistlab.inference.export import ParityError, export_run
    from mnistlab.train.calibration import CALIBRATION
    from mnistlab.train.typicality import TYPICALITY

    # the file's folder (RUN itself by default) must be writable before the export starts
    run_dir = runs.resolve_run(args.run)
    target = args.out if args.out is not None else run_dir / "model.onnx"
    output_file(target, "--out")
    try:
        r = export_run(args.run, args.out, force=args.force)
    except ParityError as exc:
        if args.json:
            console.emit_json({**exc.result, "written": False})
        raise  # one `error:` line, exit 2
    console.say(f"wrote {r['onnx_path']} ({r['onnx_bytes'] / 1024:.0f} KiB, dynamic batch)")
    onnx_dir = Path(r["onnx_path"]).resolve().parent
    if (run_dir / CALIBRATION).is_file() and onnx_dir != run_dir:
        # predict --onnx and serve --onnx read the calibration beside the file
        sys.stderr.write(f"note: the run's calibration stays in {run_dir}; copy "
                         f"{CALIBRATION} and {TYPICALITY} beside {Path(r['onnx_path']).name} "
                         "for `predict --onnx` to give calibrated confidence and 'unsure'\n")
    console.say(f"onnxruntime vs PyTorch on {r['n']:,} MNIST test images: max |logit diff| "
                f"{r['max_abs_diff']:.2e} (limit {r['tolerance']:.0e}); accuracy "
                f"{r['onnx_accuracy']:.2%} vs {r['torch_accuracy']:.2%}; OK")
    if args.json:
        console.emit_json({**r, "written": True})
    return 0


@needs_extra("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.errors import UserError
    from mnistlab.inference.predict import load_predictor
    from mnistlab.serve import create_app
    from mnistlab.serve.runner import check_port, listen_socket, serve_forever
    from mnistlab.serve.workers import serve_workers
    from mnistlab.train.device import resolve_device

    resolve_device(args.device)           # a missing GPU: one line before the port is taken
    if args.onnx and args.run:
        raise UserError("give either a RUN or --onnx, not both")
    source: Any = args.onnx or args.run
    if source is None:
        best = _best_run()
        console.say(f"model: {_chosen(None, best)}{_run_description(best)} [{best}]")
        source = best
    onnx = args.onnx is not None         # --onnx FILE is ONNX whatever its name ends in
    if args.workers > 1:
        # uvicorn's workers bind the port themselves: check it is free, then hand over
        check_port(args.host, args.port)
        # a bad run or file is one line here, not a traceback in every worker uvicorn
        # starts again and again
        load_predictor(None if onnx else source, onnx=args.onnx)
        console.say(f"serving {source} from {args.workers} processes on "
                    f"http://{args.host}:{args.port}/ (API docs at /docs; Ctrl-C stops)")
        serve_workers(str(source), args.host, args.port, args.workers, args.threads,
                      args.device, onnx=onnx)
        return 0
    # Bound now and served on as is: a taken port is one line before the model loads, and
    # nothing can take it between this check and the start.
    sock = listen_socket(args.host, args.port)
    with sock:
        import torch

        # Measured under load on 2 cores: intra-op threads on small batches oversubscribe the
        # CPU (batch throughput fell 7x with 2 threads against 1).
        torch.set_num_threads(args.threads)
        app = create_app(load_predictor(onnx=args.onnx) if onnx else source,
                         device=args.device)
        host = f"[{args.host}]" if ":" in args.host else args.host
        console.say(f"serving {app.state.predictor.name} on http://{host}:{args.port}/ "
                    "(API docs at /docs; Ctrl-C stops)")
        serve_forever(app, args.host, args.port, sock=sock,
                      header_timeout=args.header_timeout, body_timeout=args.body_timeout)
    return 0


@needs_extra("serve", "export")
def cmd_bench(args: argparse.Namespace) -> int:
    from mnistlab import console
    from mnistlab.errors import UserError
    from mnistlab.perf.serve_bench import bench_all

    run = args.run or _best_run()
    try:
        workers = [int(w) for w in str(args.workers).split(",")]
    except ValueError:
        workers = [0]
    if min(workers) < 1 or max(workers) > 64:
        raise UserError(f"--workers takes counts from 1 to 64, e.g. 1,2; got {args.workers!r}")
    r = bench_all(run, requests=args.requests, clients=args.clients, threads=args.threads,
                  workers=workers, progress=lambda m: sys.stderr.write(f"... {m}\n"))
    f, b, h, load = r["forward_only"], r["batch"], r["http_single"], r["http_load"]
    console.say(f"run: {r['run_dir']}   load average before/after: "
                f"{r['load_before']:.2f} / {r['load_after']:.2f} on {r['cpu_count']} CPUs; "
                f"{r['threads']} thread(s)")
    console.say(f"in process, PNG -> digit:      p50 {r['in_process']['p50_ms']:.2f} ms   "
                f"p99 {r['in_process']['p99_ms']:.2f} ms")
    console.say(f"forward only, PyTorch:         p50 {f['pytorch']['p50_ms']:.3f} ms   "
                f"p99 {f['pytorch']['p99_ms']:.3f} ms")
    console.say(f"forward only, onnxruntime:     p50 {f['onnxruntime']['p50_ms']:.3f} ms   "
                f"p99 {f['onnxruntime']['p99_ms']:.3f} ms")
    console.say(f"HTTP, one client:              p50 {h['p50_ms']:.2f} ms   "
                f"p99 {h['p99_ms']:.2f} ms")
    console.say(f"HTTP, {load['requests']} requests / {load['clients']} clients: "
                f"p50 {load['p50_ms']:.2f} ms   p99 {load['p99_ms']:.2f} ms   "
                f"{load['requests_per_s']:.0f} req/s   errors {load['errors']}")
    console.say(f"batch {b['batch_size']}, {b['images']:,} images: PyTorch "
                f"{b['pytorch_img_per_s']:,.0f} img/s, onnxruntime "
                f"{b['onnxruntime_img_per_s']:,.0f} img/s")
    rt = r["roundtrip"]
    console.say(f"predict on {rt['images']} test digits: as 28x28 arrays "
                f"{rt['direct_accuracy']:.1%}, as large dark-on-white PNGs "
                f"{rt['rendered_png_accuracy']:.1%}, as phone-photo JPEGs "
                f"{rt['phone_photo_accuracy']:.1%}")
    for w in r.get("workers_scaling", []):
        console.say(f"HTTP load, {w['workers']} worker(s): {w['requests_per_s']:.0f} req/s   "
                    f"p50 {w['p50_ms']:.2f} ms   p99 {w['p99_ms']:.2f} ms   errors {w['errors']}")
    if args.json:
        console.emit_json(r)
    return 1 if load["errors"] else 0
