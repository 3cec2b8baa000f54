"""`mnistlab profile`: where a fused training step's time goes; parse, call, print."""

from __future__ import annotations

import argparse

from mnistlab import console

MAX_STEPS = 100_000


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.cli import flags

    p = sub.add_parser(
        "profile", help="where a fused training step's time goes, kernel by kernel",
        description="Train MODEL (the cnn family: cnn, sprint, ...) through the fused "
                    "step (bf16 where the CPU has it natively, else fp32) on random images of "
                    "the real shape, with a wall-clock timer around each Numba kernel, each "
                    "oneDNN matmul and the optimizer step; print the ms a step of each part, "
                    "largest first, each matmul's GFLOP/s and share of the matmul peak, and "
                    "what lies between them. Timed and untimed steps alternate, so the "
                    "timers' own cost shows.")
    p.add_argument("model", metavar="MODEL", nargs="?", default="cnn",
                   help="a model of the cnn family (default: cnn, the seed CNN)")
    p.add_argument("--preset", default=None,
                   help="whose optimizer, label smoothing and batch size (default: the "
                        "model's seed preset, else its speedrun, best or robust one)")
    flags.add_option(p, "--batch-size", int, default=0, meta={
        "help": "images per step", "min": 1, "max": 4096, "unset": 0,
        "unset_means": "the preset's", "metavar": "N"})
    flags.add_option(p, "--steps", int, default=300, meta={
        "help": "timed steps (as many again untimed), rounded up to a multiple of the 3 rounds "
                "in which timed and untimed steps alternate", "min": 3, "max": MAX_STEPS})
    p.add_argument("--engine", default="fused", choices=("fused", "winograd"),
                   help="the step's convolutions: im2col (fused) or Winograd (default fused)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="the step's operands (default auto: bf16 where the CPU has it "
                        "natively, else fp32, as training's auto)")
    flags.add_option(p, "--threads", int, default=0, meta={
        "help": "torch threads (0: all cores)", "min": 0, "cores": True})
    p.add_argument("--no-peak", action="store_true",
                   help="skip measuring the matmul peak (about a second) that each "
                        "matmul's rate is set against")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=profile)


def profile(args: argparse.Namespace) -> int:
    from mnistlab.perf.profile import profile_step
    from mnistlab.train.device import NO_NATIVE_BF16, native_bf16

    p = profile_step(args.model, preset=args.preset, batch_size=args.batch_size,
                     steps=args.steps, engine=args.engine, threads=args.threads,
                     peak_seconds=0.0 if args.no_peak else 1.0, precision=args.precision)
    console.say(f"{p.engine} {p.precision} step of {p.model} (preset {p.preset}), "
                f"batch {p.batch_size}, "
                f"{p.threads} thread(s), {p.cpu_model}, torch {p.torch}: {p.ms_per_step:.3f} "
                f"ms a step untimed, {p.images_per_second:,.0f} images/s "
                f"({p.ms_per_step_timed:.3f} ms with the timers; {p.steps} steps each)")
    console.say(f"{'ms/step':>8} {'calls':>5} {'share':>6} {'GFLOP/s':>8} {'of peak':>7}  part")
    for part in p.parts:
        calls = f"{part.calls_per_step:g}" if part.calls_per_step else ""
        rate = f"{part.gflops:8,.0f}" if part.gflops is not None else " " * 8
        share = f"{part.share_of_peak:7.0%}" if part.share_of_peak is not None else " " * 7
        console.say(f"{part.ms_per_step:8.3f} {calls:>5} {part.share:6.1%} {rate} {share}  "
                    f"{part.name}")
    console.say("by kind: " + ", ".join(f"{kind} {ms:.3f} ms" for kind, ms in p.groups.items()))
    peak = (f"{p.peak_gflops:,.0f} GFLOP/s {p.precision} matmul peak measured after the steps"
            if p.peak_gflops else "no peak measured")
    if p.precision == "bf16" and not native_bf16("cpu"):
        peak += (f"; {NO_NATIVE_BF16}: the step's bf16 is emulated, and training here runs "
                 "in fp32")
    console.say(f"the step's matmuls together: {p.matmul_gflops:,.0f} GFLOP/s; {peak}")
    if args.json:
        console.emit_json(p.to_dict())
    return 0
