"""Which precision and engine a run trains in, and the model layout that goes with them.

    precision = resolve_precision(config, model)      # "fp32" | "bf16"
    choice = choose_engine(config, model, precision)  # EngineChoice: engine, reason, timings
    engine = resolve_engine(config, model, precision) # just the name: an ENGINES entry

The engines: ``autograd`` (PyTorch eager, autocast bf16 + channels_last where bf16),
``channels-last`` (the same with a conv model in channels_last in fp32 too), and for the
cnn family on the CPU the fused step (mnistlab.fused), in bf16 or fp32, with im2col
convolutions (``fused``) or Winograd F(2x2, 3x3) ones (``winograd``: auto's candidate in fp32
only, asked for in bf16).
``--engine auto`` decides by measurement: where more than one engine can train the model, a
short probe (mnistlab.train.probe) times a
few steps of each on a copy of the real model, once per CPU model, thread count, torch version,
model and batch size; the result is cached and recorded in config.json with its reason.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import UserError
from mnistlab.fused import FusedCNN, supports
from mnistlab.runs.schema import EngineChoice
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import autocast, native_bf16
from mnistlab.train.probe import ProbeCache, Step, StepFactory, probe, probe_key

# the fused engines and how each convolves after the first block (mnistlab.fused.blocks)
FUSED = {"fused": "im2col", "winograd": "winograd"}


def resolve_precision(config: TrainConfig, model: nn.Module | None = None,
                      device: str = "cpu") -> str:
    """``auto`` -> bf16 for convolutional models on a device with native bf16, else fp32.

    Measured here (AVX-512 BF16): the seed CNN trains about 2x faster in bf16 autocast with
    channels_last at the same accuracy; the FC model's matrices are too small to gain.
    ``device`` is a device type (cpu | cuda | mps); MPS stays fp32 (its bf16 autocast is partial).
    """
    if config.precision != "auto":
        return config.precision
    has_conv = model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return "bf16" if has_conv and native_bf16(device) else "fp32"


def resolve_engine(config: TrainConfig, model: nn.Module, precision: str,
                   device: str = "cpu") -> str:
    """The engine's name alone (``choose_engine(...).engine``)."""
    return choose_engine(config, model, precision, device).engine


def _autograd_step(model: nn.Module, precision: str) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(precision):
            loss = F.cross_entropy(model(x), y)
        loss.item()                         # as the trainer does: the step is complete
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _channels_last_step(model: nn.Module, precision: str) -> Step:
    return _autograd_step(prepare_model(model, precision, "channels-last"), precision)


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _fused_step(name: str) -> StepFactory:
    def factory(model: nn.Module, precision: str) -> Step:
        engine = make_engine(name, model, precision)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            loss, _ = engine.step(x, y)
            loss.item()
            engine.optimizer_step(optimizer)
        return step
    return factory


def _fused_trains(model: nn.Module, precision: str, device: str) -> bool:
    # in fp32 too: where bf16 is not native (AVX2) the fp32 step was 2.5x eager autograd's
    return device == "cpu" and precision in ("bf16", "fp32") and supports(model)


def _winograd_trains(model: nn.Module, precision: str, device: str) -> bool:
    # fp32 only: in bf16 its transforms round each output with an error the size of the whole
    # tile's sums, not of the output itself, and the seed CNN's test accuracy over paired seeds
    # came out lower (docs/performance.md); in fp32 that error is float32's (gradients within
    # 2e-6 of autograd's), and the step was 1.4x im2col's for the seed CNN on an AVX2 CPU
    return device == "cpu" and precision == "fp32" and supports(model)


def _channels_last_trains(model: nn.Module, precision: str, device: str) -> bool:
    # a candidate in fp32 on the CPU (in bf16 autograd is channels_last already): on the AVX2
    # Zen 3 the autograd step in channels_last was 1.08x (best) to 1.42x (sprint) faster
    return device == "cpu" and precision == "fp32" and _has_conv(model)


# The engines --engine auto chooses between, fastest first where nothing was measured: each
# with whether it can train (model, precision, device) and its probe step. A new engine is one
# more row here (and its name in config.ENGINES).
Trains = Callable[[nn.Module, str, str], bool]
CANDIDATES: dict[str, tuple[Trains, StepFactory]] = {
    "fused": (_fused_trains, _fused_step("fused")),
    "winograd": (_winograd_trains, _fused_step("winograd")),
    "autograd": (lambda model, precision, device: True, _autograd_step),
    "channels-last": (_channels_last_trains, _channels_last_step),
}
# auto's choice is a speed choice at equal numerics: in bf16, winograd (1.3-1.4x the fused
# step's speed on the Zen 5) is asked for only.


def choose_engine(config: TrainConfig, model: nn.Module, precision: str, device: str = "cpu",
                  *, input_shape: tuple[int, ...] = (1, 28, 28),
                  cache: ProbeCache | None = None, resumed: str | None = None
                  ) -> EngineChoice:
    """Which engine trains ``model`` (prepared: prepare_model) and why.

    An explicit ``config.engine`` is taken as asked (refused where it cannot train the model);
    ``auto`` with one candidate takes it unmeasured; with several, the probe's timings decide
    (cached in ``cache``, default ``<cache folder>/engine-probe.json``). Call it with the torch
    threads of the run in force: the thread count is part of the cache key. ``resumed``: the
    engine a resumed run started with, kept where it can still train the model (a resumed
    run continues on the numerics it began with, whatever a new probe would say)."""
    refuse_engine(config, model, device)
    if config.engine != "auto":
        return EngineChoice(engine=config.engine, reason="asked for")
    able = [name for name, (trains, _) in CANDIDATES.items() if trains(model, precision, device)]
    if resumed in able:
        return EngineChoice(engine=resumed, reason="resumed with the engine the run started with")
    if len(able) == 1:
        why = f"on {device}" if device != "cpu" else f"for {config.model} in {precision}"
        return EngineChoice(engine=able[0], reason=f"only {able[0]} trains this model {why}")
    key = probe_key(config.model, model, batch_size=config.batch_size, precision=precision,
                    engines=tuple(able))
    result = probe({name: CANDIDATES[name][1] for name in able}, key, model,
                   input_shape=input_shape, cache=cache)
    ranked = sorted(able, key=lambda name: result.timings[name])
    shown = " vs ".join(f"{name} {result.timings[name]:.1f} ms/step" for name in ranked)
    when = f"cached {result.probed[:10]}" if result.cached else "measured now"
    when += ", on a busy machine" if result.busy else ""
    reason = (f"probe: {shown} ({when}, {key.cpu}, {key.threads} threads, "
              f"torch {key.torch}, batch {key.batch_size})")
    return EngineChoice(engine=ranked[0], reason=reason, timings=dict(result.timings),
                        cached=result.cached, probed=result.probed)


def _train_flag(key: str, value: str) -> str:
    return f"--{key} {value}"


def refuse_engine(config: TrainConfig, model: nn.Module, device: str,
                  flag: Callable[[str, str], str] = _train_flag) -> None:
    """A UserError where ``config.engine``, asked for by name, cannot train ``model`` on
    ``device``; ``flag(key, value)`` spells the setting the message suggests (train's
    ``--engine autograd``, a sweep's ``--grid engine=autograd``)."""
    engine, fix = config.engine, flag("engine", "autograd")
    if engine in FUSED and device != "cpu":
        raise UserError(f"the {engine} engine runs on the CPU only, not on {device}; "
                        f"use {fix} or {flag('device', 'cpu')}")
    if engine == "channels-last" and not _has_conv(model):
        raise UserError(f"the channels-last engine lays out convolutions, and {config.model} "
                        f"has none; use {fix}")
    if engine in FUSED and not supports(model):
        raise UserError(f"the {engine} engine trains the cnn family only (3x3 conv + "
                        "relu + 2x2 pool blocks, then two dense layers), not "
                        f"{config.model}; use {fix}")


def check_engine(config: TrainConfig, flag: Callable[[str, str], str] = _train_flag) -> None:
    """``refuse_engine`` before anything is trained (a sweep's trials, which would otherwise
    each fail alone), its message in the caller's flags (``flag``: see refuse_engine)."""
    if config.engine not in (*FUSED, "channels-last"):
        return
    device = config.device if config.device in ("cuda", "mps") else "cpu"
    refuse_engine(config, _built(config), device, flag)


_BUILT: dict[str, nn.Module] = {}


def _built(config: TrainConfig) -> nn.Module:
    """``config``'s model, built once per name and settings (a sweep's trials share a few),
    under a forked RNG so that checking moves no random stream."""
    from mnistlab.models import build_model

    key = json.dumps([config.model, config.model_config], sort_keys=True, default=repr)
    if key not in _BUILT:
        if len(_BUILT) >= 16:                  # a bound for a long session, not a need
            _BUILT.clear()
        with torch.random.fork_rng(devices=[]):
            _BUILT[key] = build_model(config.model, **config.model_config)
    return _BUILT[key]


def prepare_model(model: nn.Module, precision: str, engine: str | None = None) -> nn.Module:
    """``model`` in the layout it trains and evaluates in: channels_last for a conv model in
    bf16 (oneDNN's bf16 convolutions then skip layout reorders: measured 1.6-1.8x) or through
    the channels-last engine; else as it is."""
    if (precision == "bf16" or engine == "channels-last") and _has_conv(model):
        model = model.to(memory_format=torch.channels_last)
    return model


def make_engine(name: str, model: nn.Module, precision: str = "bf16") -> Any:
    if name not in FUSED:
        return None
    engine = FusedCNN(model, convolution=FUSED[name], precision=precision)
    engine.warm_up()           # compiles (or loads) its kernels before any step is timed
    return engine


# one evaluation engine per model and precision (its buffers, per batch size, are reused epoch
# after epoch)
_EVALUATION_ENGINES: weakref.WeakKeyDictionary[nn.Module, dict[str, FusedCNN]] = \
    weakref.WeakKeyDictionary()


def evaluation_engine(model: nn.Module, precision: str, device: str = "cpu") -> FusedCNN | None:
    """The fused forward (``FusedCNN.logits``) that evaluates a cnn-family model in bf16 or
    fp32 on the CPU, whichever engine trained it; None for any other model or device.

    Every such evaluation of such a model goes through it (fit's, ``mnistlab evaluate``'s,
    the report's), so a run's recorded test figures and a later evaluation agree; it is 4-6x
    faster than the model's own forward under autocast here, and in fp32 on an AVX2 CPU 5x
    faster than the forward in PyTorch's default layout (the seed CNN on 10,000 test images:
    1.6 s against 8.0 s; its logits within 2e-7 of it). Not for serving: its buffers are
    shared, so it is not thread-safe."""
    if precision not in ("bf16", "fp32") or device != "cpu" or not supports(model):
        return None
    engines = _EVALUATION_ENGINES.setdefault(model, {})
    engine = engines.get(precision)
    if engine is None:
        engine = FusedCNN(model, precision=precision)
        engine.warm_up(forward_only=True)          # compiles or loads the forward kernels
        engines[precision] = engine
    return engine
