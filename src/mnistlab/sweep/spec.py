"""What a sweep runs: the typed ``SweepSpec``, its validation, and its expansion into trials.

    spec = SweepSpec(models=["fc"], preset="seed", seeds=[0, 1, 2, 3],
                     grid={"lr": [0.01, 0.1]})
    spec.validate()                        # UserError (one line, exit 2) before anything starts
    trials = spec.trials()                 # 2 models-x-settings groups x 4 seeds = 8 TrialSpec

A trial is one ordinary training run: the model's preset, then the trial's grid settings, then
its seed and thread count, as a ``TrainConfig``. Its run folder is ``<sweep>/<trial id>``.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mnistlab import checks
from mnistlab.checks import DEVICES
from mnistlab.data.specs import DATASETS
from mnistlab.errors import UserError
from mnistlab.train.config import TrainConfig, validate, validate_sizes
from mnistlab.train.data import check_validation
from mnistlab.train.precision import check_engine
from mnistlab.train.presets import has_preset, preset_overrides

SEARCHES = ("grid", "random")
MAX_GPUS_PER_TRIAL = 8                 # a node with more GPUs for one MNIST trial is a typo
SCHEDULERS = ("none", "asha")
# Settings that have their own flag (the positional MODEL, --seeds, --threads-per-trial) or
# that are not a single value; a grid over them would contradict that flag.
NOT_SWEPT = {"model": "MODEL", "seed": "--seeds / --seed-list",
             "threads": "--threads-per-trial", "preset": "--preset", "device": "--device",
             "model_config": "a separate sweep per model configuration"}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _sweep_flag(key: str, value: str) -> str:
    """How a sweep sets ``key`` to ``value``: its own flag, else the grid."""
    return f"{NOT_SWEPT[key]} {value}" if key in NOT_SWEPT else f"--grid {key}={value}"


@dataclass(frozen=True)
class TrialSpec:
    """One training run of a sweep: its id (also its run folder's name), group and config."""

    id: str                            # e.g. "fc-lr0.1-s0"; unique in the sweep
    model: str
    seed: int
    settings: dict[str, Any]           # the swept settings only (the group), e.g. {"lr": 0.1}
    config: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "seed": self.seed,
                "settings": dict(self.settings), "config": asdict(self.config)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(id=data["id"], model=data["model"], seed=int(data["seed"]),
                   settings=dict(data["settings"]),
                   config=TrainConfig.from_dict(dict(data["config"])))


@dataclass
class SweepSpec:
    """Everything that decides a sweep; written into sweep.json as ``spec``."""

    models: list[str]
    preset: str | None = None          # None: each model's ``seed`` preset where it has one
    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)   # setting -> values (typed)
    search: str = "grid"               # grid: every combination | random: --samples of them
    samples: int = 0                   # random search: how many combinations (each x seeds)
    search_seed: int = 0               # which combinations a random search draws
    scheduler: str = "none"            # none | asha (stops weak trials early, on test accuracy)
    concurrency: int | None = None     # trials at once; None: as many as the CPUs allow
    threads_per_trial: int = 1         # torch threads (and Ray CPUs) per trial
    max_failures: int = 3              # retries of a trial whose worker process died
    limit: int = 0                     # train on the first N images (a shorthand for the grid)
    test_limit: int = 0
    epochs: int = 0                    # 0: the preset's
    # where every trial trains (TrainConfig.device); on Ray a trial sees a GPU only if it asks
    # for one, so ``auto`` there means the CPU unless gpus_per_trial is given
    device: str = "auto"
    # Ray GPUs per trial (a fraction shares one GPU among trials); None: 1 with device cuda,
    # else 0. The local executor ignores it.
    gpus_per_trial: float | None = None

    def gpus(self) -> float:
        """The Ray GPUs each trial requests."""
        if self.gpus_per_trial is not None:
            return self.gpus_per_trial
        return 1.0 if self.device == "cuda" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # -- validation ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise UserError for anything that cannot run, before any trial starts."""
        if not self.models:
            raise UserError("sweep needs at least one MODEL")
        if not self.seeds:
            raise UserError("sweep needs at least one seed (--seeds N or --seed-list 0,1,2)")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seed-list repeats a seed: {self.seeds}")
        if any(s < 0 for s in self.seeds):
            raise UserError(f"seeds must be >= 0, got {self.seeds}")
        if self.search not in SEARCHES:
            raise UserError(f"unknown --search {self.search!r}; choose grid or random")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"unknown --scheduler {self.scheduler!r}; choose none or asha")
        if self.concurrency is not None and self.concurrency < 1:
            raise UserError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.threads_per_trial < 1:
            raise UserError(f"--threads-per-trial must be at least 1, got "
                            f"{self.threads_per_trial}")
        checks.one_of("--device", self.device, DEVICES)
        g = self.gpus_per_trial
        if g is not None:
            if not (math.isfinite(g) and 0 <= g <= MAX_GPUS_PER_TRIAL) or (g > 1 and g % 1):
                raise UserError(f"--gpus-per-trial takes 0, a fraction of one GPU (0.25) or "
                                f"whole GPUs up to {MAX_GPUS_PER_TRIAL}, got {g:g}")
            if g > 0 and self.device in ("cpu", "mps"):
                raise UserError(f"--gpus-per-trial {g:g} goes with --device cuda or auto, "
                                f"not {self.device}")
        if self.max_failures < 0:
            raise UserError(f"--max-failures must be >= 0, got {self.max_failures}")
        for key, values in self.grid.items():
            if not values:
                raise UserError(f"--grid {key}= has no values; give at least one, "
                                f"e.g. --grid {key}=V1,V2")
        if self.search == "random":
            if self.samples < 1:
                raise UserError("--search random needs --samples N (N >= 1)")
            if self.samples > self.combinations():
                raise UserError(f"--samples {self.samples} is more than the "
                                f"{self.combinations()} combinations of the grid")
        elif self.samples:
            raise UserError("--samples goes with --search random")
        for key in ("limit", "test_limit", "validation", "epochs"):
            if any(v == 0 for v in self.grid.get(key, [])):   # 0 would mean "all" or "none"
                raise UserError(f"--grid {key}= takes whole numbers >= 1, not 0 (leave {key} "
                                "out of the grid for its default)")
        for trial in self.trials():      # every config, validated as `mnistlab train` would
            validate(trial.config)
            check_engine(trial.config, _sweep_flag)
            counts = DATASETS[trial.config.dataset].counts
            check_validation(trial.config, counts["train"])
            train_images = counts["train"] - trial.config.validation
            # as train does: the limit against the images there are, then the batch
            # against the images it keeps
            validate_sizes(trial.config, train_images, counts["test"])
            validate_sizes(trial.config, min(trial.config.limit or train_images, train_images),
                           counts["test"])
            if self.scheduler == "asha" and not trial.config.eval_each_epoch:
                raise UserError("--scheduler asha compares test accuracy after each epoch; "
                                "drop eval_each_epoch=false")

    # -- expansion ----------------------------------------------------------------------------

    def combinations(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def settings_list(self) -> list[dict[str, Any]]:
        """The grid's combinations (all, or a random search's draw), in a fixed order."""
        keys = list(self.grid)
        combos = [dict(zip(keys, values, strict=True))
                  for values in itertools.product(*(self.grid[k] for k in keys))]
        if self.search == "random" and self.samples:
            picked = sorted(random.Random(self.search_seed).sample(range(len(combos)),
                                                                   self.samples))
            combos = [combos[i] for i in picked]
        return combos

    def trials(self) -> list[TrialSpec]:
        """Every trial: model x settings x seed, in that order (a group's seeds together)."""
        out: list[TrialSpec] = []
        for model in self.models:
            base = self._base(model)
            for settings in self.settings_list():
                for seed in self.seeds:
                    values = {**base, **settings, "model": model, "seed": seed,
                              "threads": self.threads_per_trial, "device": self.device}
                    out.append(TrialSpec(id=trial_id(model, settings, seed), model=model,
                                         seed=seed, settings=settings,
                                         config=TrainConfig.from_dict(values)))
        ids = [t.id for t in out]
        if len(set(ids)) != len(ids):
            raise UserError("two trials of this grid get the same folder name; "
                            "give values that differ after rounding to 6 digits")
        return out

    def _base(self, model: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        preset = self.preset or ("seed" if has_preset("seed", model) else None)
        if preset is not None:
            values.update(preset_overrides(preset, model), preset=preset)
        for name in ("limit", "test_limit", "epochs"):
            if getattr(self, name):
                values[name] = getattr(self, name)
        return values


def trial_id(model: str, settings: dict[str, Any], seed: int) -> str:
    parts = [model] + [f"{_short(k)}{_text(v)}" for k, v in settings.items()] + [f"s{seed}"]
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))


def _short(key: str) -> str:
    return key.replace("_", "")


def _text(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value).lower()


# --- the --grid flag -----------------------------------------------------------------------

def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["lr=0.01,0.1", "optimizer=sgd,adam"]`` -> ``{"lr": [0.01, 0.1], "optimizer": [...]}``,
    each value converted to its TrainConfig field's type; UserError for anything else."""
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2 (e.g. --grid lr=0.01,0.1)")
        if key in NOT_SWEPT:
            raise UserError(f"--grid {key}: not a grid setting; use {NOT_SWEPT[key]}")
        if key not in types:
            known = sorted(k for k in types if k not in NOT_SWEPT)
            raise UserError(f"--grid {key}: unknown training setting; known: {', '.join(known)}")
        if key in grid:
            raise UserError(f"--grid {key} is given twice; list all its values once")
        texts = [v.strip() for v in raw.split(",") if v.strip()]
        if not texts:
            raise UserError(f"--grid {key}= has no values; give at least one, "
                            f"e.g. --grid {key}=V1,V2")
        values = [_convert(key, types[key], t) for t in texts]
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"--grid {key}: a value is listed twice ({raw})")
        grid[key] = values
    return grid


def _convert(key: str, type_name: str, text: str) -> Any:
    kind = type_name.split("|")[0].strip()
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind == "int":
            value = float(text)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise UserError(f"--grid {key}: {text!r} is not a {kind}") from None
    return text
