"""What machine a benchmark ran on, in the terms that decide its speed: the CPU's model, the
ISA flags its kernels can use, and which engine ``--engine auto`` picks for the seed CNN
(through the same probe and cache as `mnistlab train`: mnistlab.train.precision.choose_engine).

    facts = machine_facts()    # MachineFacts: cpu_model, isa, auto (engine, reason, timings)
    facts.to_dict()            # what `mnistlab bench --json` adds: cpu_model, isa, auto_engine,
                               # auto_engine_reason, auto_engine_timings, auto_precision,
                               # auto_device
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mnistlab.models import build_model
from mnistlab.runs.environment import cpu_name, isa_flags
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import resolve_device
from mnistlab.train.precision import choose_engine, prepare_model, resolve_precision
from mnistlab.train.presets import preset_overrides


@dataclass(frozen=True)
class Isa:
    flags: tuple[str, ...]      # the ISA flags present (mnistlab.runs.environment.ISA_FLAGS)
    torch_capability: str       # torch.backends.cpu.get_cpu_capability(): AVX512, AVX2, ...

    def to_dict(self) -> dict[str, object]:
        return {"flags": list(self.flags), "torch_capability": self.torch_capability}


@dataclass(frozen=True)
class AutoChoice:
    device: str                 # what --device auto resolves to (a device type)
    precision: str              # what --precision auto resolves to there
    engine: str                 # what --engine auto resolves to there (an ENGINES name)
    reason: str = ""            # why (EngineChoice.reason: the probe's figures, or none needed)
    timings: dict[str, float] = field(default_factory=dict)   # ms per step, where probed


@dataclass(frozen=True)
class MachineFacts:
    cpu_model: str
    isa: Isa
    auto: AutoChoice            # for the seed CNN (`mnistlab train cnn`)

    def to_dict(self) -> dict[str, object]:
        return {"cpu_model": self.cpu_model, "isa": self.isa.to_dict(),
                "auto_engine": self.auto.engine, "auto_engine_reason": self.auto.reason,
                "auto_engine_timings": dict(self.auto.timings),
                "auto_precision": self.auto.precision,
                "auto_device": self.auto.device}


def auto_choice(model_name: str = "cnn") -> AutoChoice:
    """What `mnistlab train MODEL` (seed preset, every setting auto) would train with here, with
    the torch threads now in force."""
    config = TrainConfig(model=model_name, **preset_overrides("seed", model_name))
    device = resolve_device(config.device).type
    # the build draws from torch's global generator: fork it, so a caller's seeds stay put
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_name)
    precision = resolve_precision(config, model, device)
    choice = choose_engine(config, prepare_model(model, precision), precision, device)
    return AutoChoice(device=device, precision=precision, engine=choice.engine,
                      reason=choice.reason, timings=dict(choice.timings))


def machine_facts() -> MachineFacts:
    return MachineFacts(cpu_model=cpu_name(),
                        isa=Isa(tuple(isa_flags()), torch.backends.cpu.get_cpu_capability()),
                        auto=auto_choice("cnn"))
