"""Ensembles of trained runs, and the protocol that says how honest their figure is.

    result = evaluate_ensemble(["runs/a", "runs/b", "runs/c"])
    result.test_accuracy, result.protocol.selection          # "validation" or "none"

For runs that all held out the same validation split (``train --validation N``, the last N
training images), the members and their weights, test-time shifts or none, and the
temperature are all chosen on those images (``mnistlab.train.selection``); only then is the
test set read, once. Runs without that split get a plain average, which chooses nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mnistlab import checks, console
from mnistlab.errors import UserError
from mnistlab.train import selection
from mnistlab.train.calibration import Calibration, calibration_from_logits, nll
from mnistlab.train.data import load_split, load_validation
from mnistlab.train.evaluation import LoadedRun, load_run
from mnistlab.train.phases import predict_proba

EVAL_BATCH = 1000


def average_probabilities(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of K arrays of shape (N, C) -> (N, C); every array must have the same shape."""
    return selection.weighted_mean(probabilities, [1.0 / max(len(probabilities), 1)]
                                   * len(probabilities))


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(1) == labels).mean())


@dataclass
class Member:
    run_dir: str
    test_accuracy: float                   # alone (with the ensemble's test-time shifts)
    weight: float                          # its share of the averaged probabilities


@dataclass
class Candidate:
    """A run offered to the selection, scored alone on the validation split."""

    run_dir: str
    validation_accuracy: float             # the image as it is
    validation_accuracy_shifted: float     # averaged over the one-pixel shifts


@dataclass
class Protocol:
    """How the ensemble's figure was reached: what was chosen, on which images."""

    selection: str                         # validation | none (a plain average)
    note: str
    validation_images: int = 0
    validation_split: str = ""
    criterion: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    shifts: list[list[int]] = field(default_factory=lambda: [[0, 0]])   # test-time (dy, dx)
    temperature: float = 1.0
    validation_accuracy: float | None = None
    validation_nll: float | None = None    # at the chosen temperature
    checkpoints: str = "each member's final weights, fixed before training (no epoch chosen)"
    test_passes: int = 1                   # how often the test set was read


@dataclass
class EnsembleResult:
    test_accuracy: float                   # of the (weighted) averaged probabilities
    test_loss: float                       # their mean cross-entropy at the temperature, nats
    members: list[Member]
    dataset: str
    test_images: int
    mean_member_accuracy: float
    protocol: Protocol
    # the temperature and "unsure" threshold fitted on the validation mix; None for a plain
    # average, which held out no images to fit them on
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, object]:
        """What ``mnistlab evaluate --ensemble --json`` prints."""
        return asdict(self)


def evaluate_ensemble(run_dirs: Sequence[str | os.PathLike[str]], *, select: str = "auto",
                      test_limit: int = 0) -> EnsembleResult:
    """The ensemble of ``run_dirs`` on the test set.

    ``select``: ``validation`` chooses members, weights, shifts and temperature on the
    validation split the runs share, then reads the test set once; ``none`` averages every
    run with equal weight; ``auto`` (the default) is ``validation`` when every run held out
    the same split, else ``none`` with the reason in ``protocol.note``. One run is taken with
    ``validation`` (or ``auto`` resolving to it) only: its test-time shifts and temperature."""
    if select not in checks.ENSEMBLE_SELECTIONS:
        raise UserError(f"unknown selection {select!r}; choose one of: "
                        f"{', '.join(checks.ENSEMBLE_SELECTIONS)}")
    loaded, dataset = _load_members(run_dirs)
    why_not = _why_not_validation(loaded)
    if select == "validation" and why_not:
        raise UserError(why_not)
    if len(loaded) == 1 and (select == "none" or why_not):
        raise UserError(ONE_RUN)
    if select == "none" or why_not:
        note = "every member averaged with equal weight; nothing was chosen"
        # why auto fell back to it; given --select none, the user chose it and needs no hint
        reason = f" ({why_not})" if why_not and select == "auto" else ""
        return _plain_average(loaded, dataset, note + reason, test_limit)
    return _select(loaded, dataset, test_limit)


def _plain_average(loaded: Sequence[LoadedRun], dataset: str, note: str, test_limit: int
                   ) -> EnsembleResult:
    x_test, y_test = load_split(dataset, "test", test_limit)
    probs = [p[0] for p in _passes(loaded, x_test, selection.NO_SHIFTS, "test set")]
    weights = [1.0 / len(loaded)] * len(loaded)
    return _result(loaded, probs, weights, y_test.numpy(), dataset,
                   Protocol(selection="none", note=note))


def _select(loaded: Sequence[LoadedRun], dataset: str, test_limit: int) -> EnsembleResult:
    """Choose on the shared validation split, then read the test set once."""
    train = loaded[0].config.train
    assert train is not None                                 # _why_not_validation checked
    x_val, y_val = load_validation(train)
    labels = y_val.numpy()
    # per candidate and shift: validation probabilities (K x S arrays of (V, 10))
    per_shift = _passes(loaded, x_val, selection.SHIFTS, "validation")
    plain = [p[0] for p in per_shift]
    shifted = [np.mean(p, axis=0) for p in per_shift]
    shifts, weights, mix, score, temperature = _choose(plain, shifted, labels)
    chose = ("members, weights, test-time shifts and temperature" if len(loaded) > 1
             else "one run: its test-time shifts and temperature")
    protocol = Protocol(
        selection="validation",
        note=f"{chose} chosen on the validation split, which no member trained on; then the "
             "test set was read once",
        validation_images=len(labels),
        validation_split=f"the last {len(labels):,} {dataset} training images",
        criterion="greedy selection with replacement (Caruana et al. 2004) minimising the "
                  "validation cross-entropy at its best temperature",
        candidates=[Candidate(run_dir=str(run.run_dir), validation_accuracy=accuracy(p, labels),
                              validation_accuracy_shifted=accuracy(q, labels))
                    for run, p, q in zip(loaded, plain, shifted, strict=True)],
        shifts=[list(s) for s in shifts], temperature=round(temperature, 5),
        validation_accuracy=accuracy(mix, labels), validation_nll=round(score, 6))
    chosen = [i for i, w in enumerate(weights) if w > 0]
    x_test, y_test = load_split(dataset, "test", test_limit)
    test_probs = [np.mean(p, axis=0) for p in
                  _passes([loaded[i] for i in chosen], x_test, shifts, "test set (once)")]
    calibration = calibration_from_logits(selection.log_probabilities(mix), labels)
    return _result([loaded[i] for i in chosen], test_probs, [weights[i] for i in chosen],
                   y_test.numpy(), dataset, protocol, calibration)


Choice = tuple[tuple[tuple[int, int], ...], list[float], np.ndarray, float, float]


def _choose(plain: Sequence[np.ndarray], shifted: Sequence[np.ndarray], labels: np.ndarray
            ) -> Choice:
    """(shifts, weights, mixed probabilities, score, temperature): the greedy selection run
    once on the images as they are and once on the shift-averaged probabilities; the lower
    score wins."""
    best: Choice | None = None
    for shifts, probs in ((selection.NO_SHIFTS, plain), (selection.SHIFTS, shifted)):
        weights = selection.pick_weights(selection.greedy_select(probs, labels), len(probs))
        mix = selection.weighted_mean(probs, weights)
        score, temperature = selection.calibrated_fit(mix, labels)
        if best is None or score < best[3]:
            best = (shifts, weights, mix, score, temperature)
    assert best is not None
    return best


ONE_RUN = ("an ensemble needs at least two runs (--ensemble RUN RUN ...); one run is taken "
           "only to choose its test-time shifts and temperature on the validation split it "
           "held out (trained with --validation N; --select validation or auto)")


def _load_members(run_dirs: Sequence[str | os.PathLike[str]]) -> tuple[list[LoadedRun], str]:
    if not run_dirs:
        raise UserError(ONE_RUN)
    loaded = [load_run(r) for r in run_dirs]
    datasets = {run.dataset for run in loaded}
    if len(datasets) != 1:
        raise UserError(f"the runs were trained on different datasets ({', '.join(datasets)}); "
                        "an ensemble needs runs of one dataset")
    return loaded, datasets.pop()


def _why_not_validation(loaded: Sequence[LoadedRun]) -> str:
    """Why the runs cannot be chosen among on a validation split ("" when they can)."""
    sizes = {}
    for run in loaded:
        train = run.config.train
        if train is None or not train.validation:
            return (f"{run.run_dir} trained on every training image (validation 0), so no "
                    "held-out images are left to choose on; train the members with "
                    "--validation 5000, or give --select none for a plain average")
        sizes[str(run.run_dir)] = train.validation
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{r}: {v}" for r, v in sizes.items())
        return (f"the members held out different validation splits ({listed}); a "
                "validation-only ensemble needs one split for all")
    return ""


def _passes(runs: Sequence[LoadedRun], x: torch.Tensor,
            shifts: Sequence[tuple[int, int]], desc: str) -> list[list[np.ndarray]]:
    """Each run's probabilities (float64, (N, 10)) on ``x`` moved by each shift, in order,
    under one progress bar of len(runs) x len(shifts) passes."""
    passes = [(run, shift) for run in runs for shift in shifts]
    probs = [predict_proba(run.model, selection.shift_images(x, *shift), batch_size=EVAL_BATCH,
                           precision=run.precision).astype(np.float64)
             for run, shift in console.progress(passes, desc=desc, unit="pass")]
    return [probs[k:k + len(shifts)] for k in range(0, len(probs), len(shifts))]


def _result(members: Sequence[LoadedRun], probs: Sequence[np.ndarray], weights: Sequence[float],
            labels: np.ndarray, dataset: str, protocol: Protocol,
            calibration: Calibration | None = None) -> EnsembleResult:
    mix = selection.weighted_mean(probs, weights)
    logits = selection.log_probabilities(mix)
    listed = [Member(run_dir=str(run.run_dir), test_accuracy=accuracy(p, labels), weight=w)
              for run, p, w in zip(members, probs, weights, strict=True)]
    return EnsembleResult(
        test_accuracy=accuracy(mix, labels),
        test_loss=nll(logits, labels, protocol.temperature),
        members=listed, dataset=dataset, test_images=len(labels),
        mean_member_accuracy=float(np.mean([m.test_accuracy for m in listed])),
        protocol=protocol, calibration=calibration)
