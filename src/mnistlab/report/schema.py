"""The report's numbers as types: ``Report`` and its parts, built once by ``numbers.compute``
and read by ``findings``, ``document``, ``figures`` and ``render`` by attribute.

``Report.to_dict()`` is report.json: the field order below is the file's key order.
Conventions as in ``analysis``: accuracies, gaps and calibration errors are fractions, losses
as printed, times in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.report.analysis import Calibration, ConfusedPair, McNemar, SampleStats, Summary
from mnistlab.report.record import Json, Record, plain

# Config values as report.json writes them: counts and switches, and the folder as a string.
ConfigValue = int | bool | str


# --- one trained model ---------------------------------------------------------------------

@dataclass(frozen=True)
class RunRow(Record):
    """One training run (a model and a seed): its metrics.json beside what the report measured."""

    model: str
    seed: int
    run_dir: Path
    run_dir_rel: str                    # relative to the report folder: runs/<model>-seed<N>
    test_accuracy: float
    test_loss: float
    train_accuracy: float               # Keras-style: running mean over the last epoch
    train_loss: float
    train_accuracy_measured: float      # the finished model re-measured on its training images
    train_loss_measured: float
    gap_keras: float                    # train_accuracy - test_accuracy
    gap_measured: float                 # train_accuracy_measured - test_accuracy
    ece: float
    epochs: int
    precision: str
    train_seconds: float
    images_per_second: float | None
    parameters: int
    steps_per_epoch: int


@dataclass(frozen=True)
class Curves(Record):
    """Per-epoch values, one list per seed: ``[seed][epoch]`` (epochs cut to the shortest run)."""

    train_accuracy: list[list[float]]
    test_accuracy: list[list[float]]
    train_loss: list[list[float]]
    test_loss: list[list[float]]

    @property
    def epochs(self) -> int:
        return len(self.train_accuracy[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Each curve as a (seeds, epochs) array, keyed by name, for ``plots.learning_curves``."""
        return {name: np.asarray(value) for name, value in self.to_dict().items()}


@dataclass(frozen=True)
class ModelStudy(Record):
    """One model over all its seeds: size, spread over seeds, curves, errors and calibration."""

    parameters: int
    mult_adds_per_image: int
    summary_text: str                   # the Keras-style architecture table (figures 1, 3)
    precision: str
    n_seeds: int
    test_accuracy: Summary
    test_loss: Summary
    train_accuracy: Summary
    train_loss: Summary
    train_accuracy_measured: Summary
    gap_keras: Summary
    gap_measured: Summary
    ece: Summary
    train_seconds: Summary
    curves: Curves
    log_seed: int                       # the seed whose training log is shown (figures 2, 4)
    log_lines: list[str]
    eval_line: str
    confusion: np.ndarray               # (10, 10) counts summed over seeds; row = true digit
    per_class_accuracy: list[float]     # recall per digit, pooled over seeds (NaN: no images)
    most_confused: list[ConfusedPair]
    errors_per_seed: float
    calibration: Calibration            # the test predictions of all seeds pooled
    test_interval_first_seed: tuple[float, float]   # Wilson 95% interval of seed 1's accuracy


# --- across models -------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison(Record):
    """CNN against FC, paired by seed."""

    n_pairs: int
    improvement: Summary                # CNN test accuracy - FC test accuracy
    cnn_wins: int                       # pairs where the CNN's test accuracy is higher
    gap_difference: Summary             # FC gap - CNN gap (measured train accuracy)
    mcnemar_first_seed: McNemar         # a = FC, b = CNN
    error_reduction: float              # 1 - CNN errors / FC errors


@dataclass(frozen=True)
class Mistake(Record):
    """A wrong prediction on test image ``index``."""

    index: int
    true: int
    pred: int
    confidence: float


@dataclass(frozen=True)
class Grid(Record):
    """The prediction grid (figure 5) and the most confident mistakes of the model it shows."""

    model: str
    seed: int
    indices: list[int]                  # the test images shown, ascending
    draw_seed: int
    cnn: SampleStats                    # the shown model (the CNN when there is one)
    mistakes: list[Mistake]             # most confident first
    seed_grid_accuracy: float
    fc: SampleStats | None = field(default=None, metadata={"omit_none": True})


# --- the custom loop -----------------------------------------------------------------------

@dataclass(frozen=True)
class LoopStudy(Record):
    """The explicit training loop (figure 6) and its run."""

    steps: int
    planned_steps: int                  # one pass over the training images at this batch size
    batch_size: int
    lr: float
    optimizer: str
    smoothing: float                    # the exponential moving average's factor
    seed: int
    train_images: int
    threads: int
    seconds: float
    loss_first: float
    loss_last: float
    smoothed_start: float
    smoothed_end: float
    decreasing_share: float | None      # share of 100-step windows where the smoothed loss fell
    test_accuracy: float | None
    test_loss: float | None
    run_dir: Path
    run_dir_rel: str
    figure: Path = field(metadata={"json": False})   # the PNG drawn by the loop stage

    @property
    def full_pass(self) -> bool:
        """Whether this was the reference lab's recipe: one whole pass over all 60,000 images."""
        return self.train_images == 60_000 and self.steps == self.planned_steps


# --- words ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedRow(Record):
    """One number the seed report states, beside this run's (both as printed, and raw)."""

    item: str
    seed: str
    this_run: str
    note: str = ""
    seed_value: float | None = None
    run_value: float | None = None


@dataclass(frozen=True)
class Claim(Record):
    """One of the seed's qualitative claims and the measured verdict on it."""

    claim: str
    verdict: str                        # supported / not supported / mixed / inconclusive
    evidence: str


@dataclass(frozen=True)
class FigureRef(Record):
    path: str                           # relative to the report folder: figures/<name>.png
    caption: str


# --- the whole report ----------------------------------------------------------------------

@dataclass(frozen=True)
class Meta(Record):
    """What the study measured on."""

    train_images: int
    test_images: int
    seeds: list[int]


@dataclass(frozen=True)
class Versions(Record):
    mnistlab: str
    torch: str
    numpy: str
    python: str


@dataclass(frozen=True)
class Provenance(Record):
    """How and where the report was made; written into report.json's ``meta``."""

    config: Mapping[str, ConfigValue]   # ReportConfig.to_dict()
    started: str                        # UTC, ISO 8601
    total_seconds: float
    stage_seconds: dict[str, float]
    load_average: list[float] | None    # 1, 5, 15 minutes, at the end; None where the OS has none
    cpu_count: int | None
    threads: int
    versions: Versions
    command: str                        # the command line that repeats this report
    device: str = "cpu"                 # where the models trained: cpu | mps | cuda:0 (name)
    # the thread counts the models trained on, as their runs recorded them, where they differ
    # from ``threads`` (Ray trials train on their own; reused runs on theirs); [] where not
    train_threads: list[int] = field(default_factory=list)

    @property
    def reused(self) -> bool:
        return bool(self.config.get("reuse"))


@dataclass(frozen=True)
class Report(Record):
    """Every number the report shows. ``figures`` and ``provenance`` come last: the figures
    are drawn from the rest, and the provenance holds the time it all took."""

    meta: Meta
    runs: list[RunRow]
    models: dict[str, ModelStudy]
    comparison: Comparison | None       # None unless both fc and cnn were trained
    grid: Grid | None                   # None with fewer test images than the grid shows
    loop: LoopStudy
    seed_vs_run: list[SeedRow]
    claims: list[Claim]
    conclusions: list[str]
    figures: dict[str, FigureRef] = field(default_factory=dict)
    provenance: Provenance | None = None

    def runs_of(self, model: str) -> list[RunRow]:
        return [r for r in self.runs if r.model == model]

    def to_dict(self) -> dict[str, Json]:
        """report.json: ``meta`` holds the provenance too; an absent comparison or grid is {}."""
        out = super().to_dict()
        out["meta"] = {**self.meta.to_dict(),
                       **(self.provenance.to_dict() if self.provenance else {})}
        out["comparison"] = plain(self.comparison) if self.comparison else {}
        out["grid"] = plain(self.grid) if self.grid else {}
        del out["provenance"]
        return out
