"""What a run folder's JSON files hold, typed: config.json (``RunConfig``), history.json / .csv
(``HistoryRow``, one per epoch) and metrics.json (``RunMetrics``).

``to_dict()`` writes the keys, in the order, that mnistlab 0.1.0 wrote, so older readers and
tools see the same files; ``from_dict()`` reads those older files too (a setting added later
takes its default). Keys this version does not know (a newer mnistlab's) are kept in ``extra``
and written back after the known ones: a reader never crashes on them, a rewrite never loses
them. A value of the wrong type is refused (``SchemaError``; the readers in ``runs.files`` turn
it into a one-line UserError).

Two kinds of run share the files: ``train`` (``mnistlab train``: config.json's ``train`` is a
``TrainConfig``) and ``loop`` (``mnistlab loop``: its ``train`` is a ``LoopSettings``). Fields
only one kind has are None for the other and are not written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from mnistlab.runs.typed import JSONObject, JSONValue, SchemaError, fields_of, require_object
from mnistlab.train.config import TrainConfig

Kind = Literal["train", "loop"]


def _build(cls: type, data: JSONValue, what: str, **parsed: Any) -> Any:
    """``cls`` from a JSON object: checked fields, ``parsed`` (read by the caller), extra."""
    obj = require_object(data, what)
    kwargs, extra = fields_of(cls, obj, skip=tuple(parsed))
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.name not in parsed and f.name != "extra"
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SchemaError(f"{what} lacks {', '.join(missing)}")
    if any(f.name == "extra" for f in dataclasses.fields(cls)):
        kwargs["extra"] = extra
    return cls(**kwargs, **parsed)


def _ordered(obj: Any, keys: tuple[str, ...], omit_none: frozenset[str] = frozenset()
             ) -> JSONObject:
    """``keys`` of ``obj`` in that order (those in ``omit_none`` only when set), then extra."""
    out: JSONObject = {}
    for key in keys:
        value = getattr(obj, key)
        if value is None and key in omit_none:
            continue
        out[key] = value
    return out | obj.extra


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")


@dataclass
class Environment:
    """The machine and versions a run ran on (config.json's ``environment``)."""

    mnistlab: str = ""
    torch: str = ""
    numpy: str = ""
    safetensors: str = ""
    python: str = ""
    platform: str = ""
    cpu: str = ""
    cpu_capability: str = ""
    cpu_count: int | None = None
    threads: int = 0                       # torch intra-op threads the run used
    omp_wait_policy: str | None = None     # OMP_WAIT_POLICY in force (None: unset)
    gomp_spincount: str | None = None      # GOMP_SPINCOUNT in force (None: unset)
    # Added after 0.1.0, written only when known (older runs read as None): the CPU's ISA
    # flags that decide the kernels (avx2, avx512_bf16, amx_tile, ...) and the device trained on
    isa: list[str] | None = None
    device: str | None = None              # cpu | mps | cuda:0 (its name)
    extra: JSONObject = field(default_factory=dict)

    def to_dict(self) -> JSONObject:
        return _ordered(self, _names(Environment), omit_none=frozenset({"isa", "device"}))

    @classmethod
    def from_dict(cls, data: JSONValue) -> Environment:
        return _build(cls, data, "environment")


@dataclass
class EngineChoice:
    """Which engine a run trains through and why (config.json's ``engine_choice``; also what
    ``mnistlab.train.precision.resolve_engine`` returns). ``timings``: ms per training step of
    each engine the probe measured (empty where nothing was measured: one candidate, or asked
    for); ``cached``: the timings came from the probe cache, not a fresh measurement."""

    engine: str                            # fused | winograd | autograd | channels-last
    reason: str                            # one line: "asked for", "probe: fused 5.7 ms/step ..."
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    probed: str | None = None              # UTC time of the measurement, where one was made
    extra: JSONObject = field(default_factory=dict)

    def to_dict(self) -> JSONObject:
        return _ordered(self, _names(EngineChoice), omit_none=frozenset({"probed"}))

    @classmethod
    def from_dict(cls, data: JSONValue) -> EngineChoice:
        return _build(cls, data, "engine_choice")


@dataclass
class Resumption:
    """A resumed stretch of a run (config.json's ``resumed``, one per resume that restored a
    checkpoint): from which epoch, when, by which command, and where: a run may continue with
    another thread count or on another device, and config.json says so."""

    epoch: int                             # epochs already done when it resumed
    created: str                           # UTC, 2026-01-31T12:00:00Z
    threads: int
    environment: Environment
    command: str | None = None
    extra: JSONObject = field(default_factory=dict)

    def to_dict(self) -> JSONObject:
        return {"epoch": self.epoch, "created": self.created, "threads": self.threads,
                "environment": self.environment.to_dict(),
                **({"command": self.command} if self.command is not None else {})} | self.extra

    @classmethod
    def from_dict(cls, data: JSONValue) -> Resumption:
        obj = require_object(data, "resumed")
        return _build(cls, obj, "resumed",
                      environment=Environment.from_dict(obj.get("environment")))


@dataclass
class LoopSettings:
    """What a loop run (``mnistlab loop``) was trained with: config.json's ``train``."""

    model: str
    steps: int                             # iterations run (resolved: never 0)
    batch_size: int
    lr: float
    seed: int
    limit: int
    threads: int                           # resolved: the threads in force
    smoothing: float
    refresh_seconds: float
    dataset: str = "mnist"
    optimizer: str = "sgd (hand-written update)"
    extra: JSONObject = field(default_factory=dict)

    # dataset first: readers of any run (evaluate, the report) look it up under "train".
    _KEYS = ("dataset", "optimizer", "model", "steps", "batch_size", "lr", "seed", "limit",
             "threads", "smoothing", "refresh_seconds")

    def to_dict(self) -> JSONObject:
        return _ordered(self, self._KEYS)

    @classmethod
    def from_dict(cls, data: JSONValue) -> LoopSettings:
        return _build(cls, data, "the loop settings")


@dataclass
class RunConfig:
    """config.json: what repeats a run."""

    model: str
    model_config: JSONObject = field(default_factory=dict)   # keyword args of its factory
    precision: str = "fp32"                # as trained: fp32 | bf16
    engine: str | None = None              # train runs: an ENGINES name (train.config)
    threads: int = 0
    parameters: int = 0
    kind: Kind = "train"
    train: TrainConfig | None = None       # train runs
    loop: LoopSettings | None = None       # loop runs; written as "train" too
    # Settings under "train" that this TrainConfig does not know (a newer mnistlab's): kept so
    # that resuming refuses them, never silently drops them.
    train_extra: JSONObject = field(default_factory=dict)
    environment: Environment | None = None
    created: str | None = None             # UTC, 2026-01-31T12:00:00Z
    command: str | None = None             # the command line that started it (the CLI's)
    # Added after 0.1.0 (older runs read as None): which engine --engine resolved to and why
    engine_choice: EngineChoice | None = None
    # each resume that restored a checkpoint, oldest first (absent in runs never resumed)
    resumed: list[Resumption] = field(default_factory=list)
    extra: JSONObject = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        settings = self.train or self.loop
        return settings.dataset if settings is not None else "mnist"

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"model": self.model, "model_config": self.model_config,
                           "precision": self.precision}
        if self.engine is not None:
            out["engine"] = self.engine
        out |= {"threads": self.threads, "parameters": self.parameters}
        if self.kind != "train":           # train runs never wrote it
            out["kind"] = self.kind
        if self.train is not None:
            out["train"] = dataclasses.asdict(self.train) | self.train_extra
        elif self.loop is not None:
            out["train"] = self.loop.to_dict()
        if self.environment is not None:
            out["environment"] = self.environment.to_dict()
        for key in ("created", "command"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.engine_choice is not None:
            out["engine_choice"] = self.engine_choice.to_dict()
        if self.resumed:
            out["resumed"] = [r.to_dict() for r in self.resumed]
        return out | self.extra

    @classmethod
    def from_dict(cls, data: JSONValue) -> RunConfig:
        obj = require_object(data, "config")
        kind = obj.get("kind", "train")
        if kind not in ("train", "loop"):
            raise SchemaError(f"kind is {kind!r}; expected 'train' or 'loop'")
        parsed: dict[str, Any] = {"kind": kind, "train": None, "loop": None,
                                  "train_extra": {}, "environment": None,
                                  "engine_choice": None, "resumed": []}
        settings = obj.get("train")
        if settings is not None and kind == "loop":
            parsed["loop"] = LoopSettings.from_dict(settings)
        elif settings is not None:
            kwargs, parsed["train_extra"] = fields_of(
                TrainConfig, require_object(settings, "train"))
            parsed["train"] = TrainConfig(**kwargs)
        if obj.get("environment") is not None:
            parsed["environment"] = Environment.from_dict(obj["environment"])
        if obj.get("engine_choice") is not None:
            parsed["engine_choice"] = EngineChoice.from_dict(obj["engine_choice"])
        resumed = obj.get("resumed") or []
        if not isinstance(resumed, list):
            raise SchemaError("resumed is not a list")
        parsed["resumed"] = [Resumption.from_dict(r) for r in resumed]
        return _build(cls, obj, "config", **parsed)


# history rows: the keys of each kind, in the order each always wrote them
_TRAIN_ROW = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
              "eval_seconds", "eval_steps", "images_per_second", "steps", "lr")
_LOOP_ROW = ("epoch", "steps", "train_loss", "smoothed_loss", "test_loss", "test_accuracy")


@dataclass
class HistoryRow:
    """One finished epoch (a loop run: one pass over the training images). Test figures are
    None where that epoch was not evaluated."""

    epoch: int
    train_loss: float                      # running mean over the epoch, as Keras shows
    train_accuracy: float | None = None    # loop runs do not measure it
    test_loss: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None           # the training phase only
    eval_seconds: float | None = None
    eval_steps: int | None = None          # None: not evaluated (or a run older than it)
    images_per_second: float | None = None
    steps: int | None = None               # optimizer steps this epoch
    lr: float | None = None                # at the end of the epoch
    smoothed_loss: float | None = None     # loop runs: the exponential average at its end
    extra: JSONObject = field(default_factory=dict)

    @property
    def is_loop(self) -> bool:
        return self.smoothed_loss is not None

    def to_dict(self) -> JSONObject:
        if not self.is_loop:
            return _ordered(self, _TRAIN_ROW)
        out = _ordered(self, _LOOP_ROW)
        # Loop runs have always written NaN for "not evaluated"; kept so the files do not change.
        for key in ("test_loss", "test_accuracy"):
            if out[key] is None:
                out[key] = math.nan
        return out

    @classmethod
    def from_dict(cls, data: JSONValue) -> HistoryRow:
        row: HistoryRow = _build(cls, data, "a history row")
        if row.is_loop:
            for key in ("test_loss", "test_accuracy"):
                value = getattr(row, key)
                if value is not None and math.isnan(value):
                    setattr(row, key, None)
        return row


# metrics: one order that both kinds' key orders follow; _METRICS_OPTIONAL: written when set
_METRICS_KEYS = ("model", "dataset", "preset", "kind", "seed", "precision", "engine",
                 "warmup_seconds", "threads", "steps", "batch_size", "lr", "epochs",
                 "parameters", "test_accuracy", "test_loss", "train_accuracy", "train_loss",
                 "loss_first", "loss_last", "smoothed_first", "smoothed_last", "train_seconds",
                 "eval_seconds", "images_per_second", "train_images", "test_images", "run_dir")
_METRICS_OPTIONAL = frozenset({
    "kind", "engine", "warmup_seconds", "steps", "batch_size", "lr", "train_accuracy",
    "loss_first", "loss_last", "smoothed_first", "smoothed_last", "eval_seconds"})


@dataclass
class RunMetrics:
    """metrics.json: the final figures of a finished run (also what ``--json`` prints)."""

    model: str = ""
    dataset: str = "mnist"
    preset: str | None = None              # loop runs: "loop"
    kind: Kind | None = None               # "loop" for loop runs; train runs never wrote it
    seed: int = 0
    precision: str = "fp32"
    engine: str | None = None              # train runs
    warmup_seconds: float | None = None    # train runs: compiling the fused engine's kernels
    threads: int = 0
    steps: int | None = None               # loop runs: iterations
    batch_size: int | None = None          # loop runs
    lr: float | None = None                # loop runs
    epochs: int | float = 0                # loop runs: passes over the training images
    parameters: int = 0
    test_accuracy: float | None = None     # None only in a file that lacks it
    test_loss: float | None = None
    train_accuracy: float | None = None    # train runs
    train_loss: float | None = None
    loss_first: float | None = None        # loop runs: raw loss of the first/last iteration
    loss_last: float | None = None
    smoothed_first: float | None = None    # loop runs: the smoothed curve's ends
    smoothed_last: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None      # train runs
    images_per_second: float | None = None
    train_images: int = 0
    test_images: int = 0
    run_dir: str | None = None
    extra: JSONObject = field(default_factory=dict)

    def to_dict(self) -> JSONObject:
        return _ordered(self, _METRICS_KEYS, _METRICS_OPTIONAL)

    @classmethod
    def from_dict(cls, data: JSONValue) -> RunMetrics:
        return _build(cls, data, "metrics")
