"""`mnistlab profile`: where a fused training step's time goes, part by part.

    p = profile_step("cnn")                        # the seed CNN, its preset's batch (64), in
                                                   # bf16 where native, else in fp32
    p.ms_per_step, [(part.name, part.ms_per_step) for part in p.parts]

The step's own timers (mnistlab.fused.timing) stop the clock around each Numba kernel and each
oneDNN matmul; the optimizer step is timed too, and "other" is what lies between them (loss,
small torch ops, Python). Timed and untimed bursts of steps alternate on the same engine, so
the timers' own cost shows as the difference between ``ms_per_step_timed`` and ``ms_per_step``.
The inputs are random images of the real shape, as in the engine probe: the step's time does
not depend on which digits it sees.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from mnistlab.errors import UserError
from mnistlab.fused import FusedCNN, supports
from mnistlab.fused.timing import PartTimer
from mnistlab.models.shapes import IMAGE_SIZE
from mnistlab.perf.bench import matmul_peak_gflops
from mnistlab.runs.environment import cpu_name
from mnistlab.threads import torch_threads
from mnistlab.train.build import build, make_optimizer
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import native_bf16
from mnistlab.train.precision import FUSED, prepare_model
from mnistlab.train.presets import has_preset, preset_overrides

OPTIMIZER = "optimizer step"
OTHER = "other: loss, small torch ops, Python"
ROUNDS = 3                    # timed and untimed bursts alternate this many times
BATCHES = 8                   # distinct random batches the steps cycle through


@dataclass(frozen=True)
class Part:
    name: str
    ms_per_step: float
    calls_per_step: float
    share: float              # of the timed step
    gflops: float | None      # a matmul's rate; None for the rest
    share_of_peak: float | None   # of the matmul peak (the step's precision), same run


@dataclass(frozen=True)
class StepProfile:
    model: str
    preset: str
    engine: str
    precision: str            # bf16 | fp32: the step's operands
    batch_size: int
    threads: int
    steps: int                # timed steps (as many again untimed)
    cpu_model: str
    torch: str
    ms_per_step: float        # untimed
    ms_per_step_timed: float
    images_per_second: float  # untimed
    parts: list[Part]         # largest first, "other" last
    groups: dict[str, float]  # ms a step: matmuls, Numba kernels, optimizer, other
    matmul_gflops: float      # all the step's matmuls together
    peak_gflops: float | None  # (n x n) @ (n x n) in the step's precision, this run's threads;
    #                            None: not measured
    peak_gflops_bf16: float | None  # the same, where the step is in bf16 (else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESET_ORDER = ("seed", "speedrun", "best", "robust")


def default_preset(model: str) -> str | None:
    """The first of PRESET_ORDER with a recipe for ``model`` (sprint: speedrun), else None."""
    return next((name for name in PRESET_ORDER if has_preset(name, model)), None)


def profile_step(model: str = "cnn", *, preset: str | None = None, batch_size: int = 0,
                 steps: int = 100, engine: str = "fused", threads: int = 0,
                 peak_seconds: float = 1.0, precision: str = "auto") -> StepProfile:
    """Profile ``steps`` training steps of ``model`` (its preset's optimizer, label smoothing
    and, unless ``batch_size``, batch) through the fused ``engine`` (fused or winograd) in
    ``precision`` (auto: bf16 where the CPU has it natively, else fp32, as training's auto);
    then measure the matmul peak of that precision for ``peak_seconds`` (0: not), against
    which each matmul's rate is set. Emulated bf16 has no peak worth the name: none."""
    if engine not in FUSED:
        raise UserError(f"--engine must be one of {', '.join(FUSED)}, not {engine!r}")
    native = native_bf16("cpu")
    if precision == "auto":
        precision = "bf16" if native else "fp32"
    if precision not in ("bf16", "fp32"):
        raise UserError(f"--precision must be one of auto, bf16, fp32, not {precision!r}")
    preset = preset or default_preset(model)
    overrides = preset_overrides(preset, model) if preset else {}
    config = TrainConfig(model=model, preset=preset, **overrides)
    if batch_size:
        config = replace(config, batch_size=batch_size)
    net = prepare_model(build(config)[0], precision)
    if not supports(net):
        raise UserError(f"the fused step trains the cnn family ((3x3 conv + ReLU + 2x2 max-pool) "
                        f"blocks, then two dense layers); {model!r} is not in it")
    optimizer = make_optimizer(net, config)
    batch = config.batch_size
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCHES * batch, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    y = torch.randint(0, 10, (BATCHES * batch,), generator=generator)
    timer = PartTimer()
    with torch_threads(threads) as used:
        fused = FusedCNN(net, convolution=FUSED[engine], precision=precision)
        fused.warm_up()

        def burst(n: int, timed: bool) -> float:
            fused.time_with(timer if timed else None)
            start = time.perf_counter()
            for i in range(n):
                j = i % BATCHES
                fused.step(x[j * batch:(j + 1) * batch], y[j * batch:(j + 1) * batch],
                           config.label_smoothing)
                if timed:
                    timer.run(OPTIMIZER, fused.optimizer_step, optimizer)
                else:
                    fused.optimizer_step(optimizer)
            fused.time_with(None)
            return time.perf_counter() - start

        burst(max(10, steps // 5), timed=False)           # first touches, oneDNN set-up
        timer.clear()
        per_round = max(1, -(-steps // ROUNDS))     # at least the steps asked for
        untimed = timed = 0.0
        for _ in range(ROUNDS):
            untimed += burst(per_round, timed=False)
            timed += burst(per_round, timed=True)
        # emulated bf16 (no AVX-512 BF16 or AMX) has no peak worth the name: no share of it
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peak = (matmul_peak_gflops(dtype, seconds=peak_seconds)["wall"]
                if peak_seconds > 0 and (native or precision == "fp32") else None)
    done = per_round * ROUNDS
    return _summarise(config, engine, precision, used, done, untimed, timed, timer, peak)


def _rate(flops: int, seconds: float, peak: float | None) -> tuple[float | None, float | None]:
    if not flops or seconds <= 0:
        return None, None
    gflops = flops / seconds / 1e9
    return round(gflops, 1), (round(gflops / peak, 4) if peak else None)


def _summarise(config: TrainConfig, engine: str, precision: str, threads: int, steps: int,
               untimed: float, timed: float, timer: PartTimer, peak: float | None
               ) -> StepProfile:
    step_ms = 1e3 * timed / steps
    parts = [Part(name, round(1e3 * seconds / steps, 4), round(timer.calls[name] / steps, 2),
                  round(seconds / timed, 4), *_rate(timer.flops[name], seconds, peak))
             for name, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1])]
    other = max(0.0, step_ms - sum(p.ms_per_step for p in parts))
    parts.append(Part(OTHER, round(other, 4), 0.0, round(other / step_ms, 4), None, None))
    groups = {"matmuls": 0.0, "Numba kernels": 0.0, "optimizer": 0.0, "other": other}
    for p in parts[:-1]:                    # a matmul is what the timer counted FLOPs for
        kind = ("optimizer" if p.name == OPTIMIZER
                else "matmuls" if timer.flops[p.name] else "Numba kernels")
        groups[kind] += p.ms_per_step
    return StepProfile(
        model=config.model, preset=config.preset or "none", engine=engine, precision=precision,
        batch_size=config.batch_size, threads=threads, steps=steps, cpu_model=cpu_name(),
        torch=torch.__version__, ms_per_step=round(1e3 * untimed / steps, 4),
        ms_per_step_timed=round(step_ms, 4),
        images_per_second=round(config.batch_size * steps / untimed, 1), parts=parts,
        groups={k: round(v, 4) for k, v in groups.items()},
        matmul_gflops=round(sum(timer.flops.values()) / steps / max(groups["matmuls"], 1e-9)
                            / 1e6, 1),
        peak_gflops=round(peak, 1) if peak else None,
        peak_gflops_bf16=round(peak, 1) if peak and precision == "bf16" else None)
