"""`mnistlab bench` and `mnistlab speedrun`: parse, call the library, print."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from mnistlab import console

# Beyond these a benchmark is a typo: the seed trains 5 epochs, a speedrun reports over 5 seeds.
MAX_EPOCHS = 1000
MAX_SEEDS = 100


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab import checks
    from mnistlab.cli import flags
    from mnistlab.train.presets import preset_overrides

    p = sub.add_parser(
        "bench", help="training speed of the seed models: fp32, bf16, Keras, machine limit",
        description="Train the seed fc and cnn presets with PyTorch autograd in fp32 and in "
                    "bf16 + channels_last, the cnn also through mnistlab's fused steps "
                    "(im2col and Winograd convolutions, fp32 and bf16), and (when .bench-venv "
                    "exists; `make bench` builds it) the same models in Keras/TensorFlow; print "
                    "images/s, test accuracy, the ratio to Keras and the share of the "
                    "machine's matmul peak.")
    flags.add_option(p, "--epochs", int, meta={
        "help": "epochs per row (5 is the seed's)", "min": 1, "max": MAX_EPOCHS},
        shown_default="5; 1 with --quick")
    flags.add_option(p, "--threads", int, default=0, meta={
        "help": "threads for both frameworks (0: all cores)", "min": 0, "cores": True})
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (512 images, 1 epoch unless --epochs): checks the "
                        "plumbing, not the speed")
    p.add_argument("--no-keras", action="store_true", help="skip the Keras reference")
    flags.add_device(p, "where mnistlab's rows train (the Keras reference: the CPU; on a GPU "
                        "the fused row and the share of the CPU's peak are left out)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=bench)

    p = sub.add_parser(
        "speedrun", help="the time-to-99%% recipe over several seeds",
        description="Train the speedrun recipe (model `sprint`, 1 epoch, bf16 where native, "
                    "else fp32) once per seed; "
                    "print seconds from first to last training step and test accuracy per seed, "
                    "then mean and spread. Data loading and process start are reported apart.")
    flags.add_option(p, "--seeds", int, default=5, meta={
        "help": "how many seeds", "min": 1, "max": MAX_SEEDS})
    flags.add_option(p, "--first-seed", int, default=0, meta={
        "help": "seeds are N, N+1, ...", "min": 0, "below": checks.SEED_BELOW})
    flags.add_option(p, "--threads", int, default=0, meta={
        "help": "torch threads (0: all cores)", "min": 0, "cores": True})
    batch = preset_overrides("speedrun", "sprint")["batch_size"]     # one step at least
    flags.add_option(p, "--limit", int, default=0, meta={
        "help": "train on the first N training images only", "min": batch, "unset": 0,
        "max_of": "the training images",
        "unset_means": "all", "metavar": "N"})
    flags.add_option(p, "--test-limit", int, default=0, meta={
        "help": "evaluate on the first N test images only", "min": 1, "unset": 0,
        "max_of": "the test images",
        "unset_means": "all", "metavar": "N"})
    p.add_argument("--compare", action="store_true",
                   help="then train the published recipe (tuomaso/train_mnist_fast) typed "
                        "into plain PyTorch, fp32 and bf16, same seeds and images; print the "
                        "ratio")
    flags.add_device(p, "where the recipe trains (with --compare, the reference too)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=speedrun)


def bench(args: argparse.Namespace) -> int:
    from mnistlab.perf.bench import QUICK, BenchSize, run_bench
    from mnistlab.train.device import resolve_device

    resolve_device(args.device)          # a missing GPU: one line before any timing
    size = QUICK if args.quick else BenchSize()
    if args.epochs is not None:              # asked for: also with --quick's tiny sizes
        size = replace(size, epochs=args.epochs)

    def on_row(r: dict) -> None:
        ips = r["images_per_second"]
        if ips is None:
            console.say(f"{r['framework']:8} {r['model']:4} {r['precision']:5} "
                        f"{r['engine']:9} failed: {r.get('error')}")
            return
        cpu = r.get("images_per_cpu_second") or 0
        share = r.get("share_of_peak")
        peak = f"{100 * share:5.1f}% of peak" if share is not None else "(no CPU peak)"
        share_cpu = r.get("share_of_peak_cpu")
        peak_cpu = (f"{100 * share_cpu:5.1f}% of CPU peak" if share_cpu is not None
                    else "")
        console.say(f"{r['framework']:8} {r['model']:4} {r['precision']:5} {r['engine']:9} "
                    f"{ips:>9,.0f} img/s  {r['train_seconds']:7.1f} s  "
                    f"test {r['test_accuracy']:.4f}  {peak}  "
                    f"| {cpu:>8,.0f} img/CPU-s  {peak_cpu}".rstrip())

    result = run_bench(size, keras=not args.no_keras, threads=args.threads, on_row=on_row,
                       device=args.device)
    peak, peak_cpu = result["peak_gflops"], result["peak_gflops_cpu"]
    libraries = ", ".join(f"{lib} {v:,.0f}"
                          for lib, v in result["peak_gflops_by_library"]["fp32"].items())
    bf16 = (f"bf16 {peak['bf16']:,.0f} / {peak_cpu['bf16']:,.0f}" if peak["bf16"] is not None
            else "bf16 not measured (emulated here)")
    console.say(f"device: {result['device']}; CPU matmul peak (GFLOP/s): fp32 "
                f"{peak['fp32']:,.0f} wall / "
                f"{peak_cpu['fp32']:,.0f} CPU-time ({libraries}), {bf16}; "
                f"load average {result['load_average']}")
    if any((r.get("share_of_peak") or 0) > 1 for r in result["rows"]):
        console.say("note: a share of peak over 100% is no error: shares count the model's "
                    "own multiply-adds (direct convolutions over whole maps), and the fused "
                    "engines reach the same result with fewer (no conv outputs the pooling "
                    "drops; Winograd: 16 multiplies per 2x2 outputs instead of 36)")
    if result["skipped"]:
        console.say(f"left out: {', '.join(result['skipped']['rows'])}: "
                    f"{result['skipped']['why']}")
    for r in result["rows"]:
        if r["framework"] == "mnistlab" and r["ratio_vs_keras"]:
            steady = (f", {r['steady_ratio_vs_keras']:.2f}x (epochs after the first)"
                      if r["steady_ratio_vs_keras"] else "")
            console.say(f"{r['model']} {r['precision']} {r['engine']}: "
                        f"{r['ratio_vs_keras']:.2f}x Keras "
                        f"(wall), {r['ratio_vs_keras_cpu'] or 0:.2f}x (CPU time){steady}")
    if result["keras"] != "measured":
        console.say(f"keras: {result['keras']}")
    isa = result["isa"]
    console.say(f"cpu: {result['cpu_model']}; isa: {' '.join(isa['flags']) or 'unknown'} "
                f"(torch: {isa['torch_capability']})")
    console.say(f"--engine auto for the seed cnn: {result['auto_engine']} "
                f"({result['auto_engine_reason']})")
    if args.json:
        console.emit_json(result)
    return 0


def speedrun(args: argparse.Namespace) -> int:
    from mnistlab import checks
    from mnistlab.cli import flags
    from mnistlab.data.specs import DATASETS
    from mnistlab.perf.speedrun import recipe, run_speedrun
    from mnistlab.train.config import TrainConfig, validate_sizes
    from mnistlab.train.device import resolve_device

    resolve_device(args.device)          # a missing GPU: one line before any training
    checks.seed("--first-seed + --seeds - 1", args.first_seed + args.seeds - 1)
    # the recipe's batch must fit in the images --limit keeps, as in `mnistlab train`; from the
    # pinned counts, not by loading the data (the run times its own loading)
    config = recipe(threads=args.threads, limit=args.limit, test_limit=args.test_limit)
    counts = DATASETS[config.dataset].counts
    kept = min(args.limit, counts["train"]) if args.limit else counts["train"]
    # the recipe's batch size is no flag here: name it as what it is
    flags_or_recipe = flags.label_for(TrainConfig, positional={"batch_size": "the recipe's batch"})
    validate_sizes(config, kept, counts["test"], flags_or_recipe)

    def on_seed(r: dict) -> None:
        console.say(f"seed {r['seed']}: {r['train_seconds']:.2f} s "
                    f"({r['fit_cpu_seconds']:.2f} CPU-s), "
                    f"test accuracy {100 * r['test_accuracy']:.2f}%")

    def on_reference(s: Any) -> None:
        console.say(f"reference {s.precision:4}: mean {100 * s.mean_test_accuracy:.2f}% in "
                    f"{s.mean_train_seconds:.2f} s of training over {len(s.runs)} seed(s)")

    result = run_speedrun(args.seeds, first_seed=args.first_seed, threads=args.threads,
                          limit=args.limit, test_limit=args.test_limit, on_seed=on_seed,
                          compare=args.compare, on_reference=on_reference,
                          device=args.device)
    one = args.seeds == 1           # one seed has no spread to show
    spread = "" if one else f" +- {100 * result['std_test_accuracy']:.2f}"
    time_spread = "" if one else f" +- {result['std_train_seconds']:.2f}"
    console.say(f"mnistlab      : {'' if one else 'mean '}{100 * result['mean_test_accuracy']:.2f}%"
                f"{spread} in {result['mean_train_seconds']:.2f}{time_spread} s "
                f"of training; data {result['data_seconds']:.2f} s, warm-up "
                f"{result['warmup_seconds']:.2f} s, process start "
                f"{result['process_start_seconds']} s; load average {result['load_average']}")
    if args.compare:
        ratio = result["speedup_vs_reference"]
        shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
        rows = " and ".join(r["precision"] for r in result["reference"])
        which = f"the faster of {rows}" if len(result["reference"]) > 1 else "its only row"
        console.say(f"speedup vs the reference ({result['reference_fastest_precision']}, "
                    f"{which}): {shown} (its warm-up "
                    f"{result['reference_warmup_seconds']:.2f} s, untimed)")
        for left in result["reference_left_out"]:
            console.say(f"reference {left} (emulated, far slower than fp32): left out")
    console.say(f"whole command: {result['command_seconds']} s from process start; up to the "
                f"last seed {result['wall_over_training']}x the training seconds")
    if args.json:
        console.emit_json(result)
    return 0
