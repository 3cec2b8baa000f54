"""Every number the report shows, computed once from the trained runs: a ``schema.Report``.

The text (``document``), the figures and the tests all read it; nothing downstream computes
a metric of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnistlab.models import build_model
from mnistlab.models import summary as S
from mnistlab.report import analysis as A
from mnistlab.report import findings
from mnistlab.report.inputs import StudyData, Trained
from mnistlab.report.schema import (
    Comparison,
    Curves,
    Grid,
    LoopStudy,
    Meta,
    Mistake,
    ModelStudy,
    Report,
    RunRow,
)
from mnistlab.report.seed import SEED
from mnistlab.train.callbacks import epoch_line, eval_line
from mnistlab.train.config import TrainConfig

GRID_SEED = 0          # which 20 test images the prediction grid shows (analysis.grid_indices)
GRID_SIZE = 20         # 5 x 4, as in the seed's figure 5
MISTAKES = 20          # the CNN's most confident mistakes shown in the second grid


def compute(trained: Sequence[Trained], loop: LoopStudy, data: StudyData) -> Report:
    """The report, less its figures and provenance (the caller adds both afterwards)."""
    labels = data.labels()
    by_model: dict[str, list[Trained]] = {}
    for t in trained:
        by_model.setdefault(t.model, []).append(t)
    models = {name: _model_numbers(name, runs, labels) for name, runs in by_model.items()}
    meta = Meta(train_images=len(data.x_train), test_images=len(labels),
                seeds=sorted({t.seed for t in trained}))
    runs = [_run_row(t, labels) for t in trained]
    comparison = (_comparison(by_model, models, labels) if {"fc", "cnn"} <= set(models)
                  else None)
    grid = _grid(by_model, labels)
    claims = findings.claims(models, comparison, grid, loop)
    return Report(
        meta=meta, runs=runs, models=models, comparison=comparison, grid=grid, loop=loop,
        seed_vs_run=findings.seed_vs_run(meta, runs, models, comparison, grid, loop),
        claims=claims,
        conclusions=findings.conclusions(meta, models, comparison, claims, loop),
    )


def _run_row(t: Trained, labels: np.ndarray) -> RunRow:
    m = t.metrics
    cal = A.calibration(t.probs, labels)
    return RunRow(
        model=t.model, seed=t.seed, run_dir=t.run_dir,
        run_dir_rel=f"runs/{t.run_dir.name}",
        test_accuracy=m.test_accuracy, test_loss=m.test_loss,
        train_accuracy=m.train_accuracy, train_loss=m.train_loss,
        train_accuracy_measured=t.train_eval["accuracy"],
        train_loss_measured=t.train_eval["loss"],
        gap_keras=m.train_accuracy - m.test_accuracy,
        gap_measured=t.train_eval["accuracy"] - m.test_accuracy,
        ece=cal.ece, epochs=m.epochs, precision=m.precision,
        train_seconds=m.train_seconds, images_per_second=m.images_per_second,
        parameters=m.parameters, steps_per_epoch=t.history[-1].steps,
    )


def _model_numbers(name: str, runs: list[Trained], labels: np.ndarray) -> ModelStudy:
    rows = [_run_row(t, labels) for t in runs]

    def over_seeds(key: str) -> A.Summary:
        return A.summarize([getattr(r, key) for r in rows])

    preds = [t.probs.argmax(axis=1) for t in runs]
    cm = sum(A.confusion_matrix(labels, p) for p in preds)          # summed over seeds
    pooled_cal = A.calibration(np.concatenate([t.probs for t in runs]),
                               np.concatenate([labels] * len(runs)))
    summ = S.summarize(build_model(name), name)
    first = runs[0]
    epochs = min(len(t.history) for t in runs)
    last = first.history[-1]
    # Runs written before history rows carried eval_steps: the default evaluation batch size.
    eval_steps = last.eval_steps or -(-len(labels) // TrainConfig.eval_batch_size)
    eval_result = {"steps": eval_steps,
                   "seconds": last.eval_seconds or 0.0,
                   "test_accuracy": first.metrics.test_accuracy,
                   "test_loss": first.metrics.test_loss}

    def curve(key: str) -> list[list[float]]:
        return [[float(getattr(r, key)) for r in t.history[:epochs]] for t in runs]

    return ModelStudy(
        parameters=summ.total_params,
        mult_adds_per_image=summ.mult_adds,
        summary_text=S.render(summ),
        precision=first.metrics.precision,
        n_seeds=len(runs),
        test_accuracy=over_seeds("test_accuracy"),
        test_loss=over_seeds("test_loss"),
        train_accuracy=over_seeds("train_accuracy"),
        train_loss=over_seeds("train_loss"),
        train_accuracy_measured=over_seeds("train_accuracy_measured"),
        gap_keras=over_seeds("gap_keras"),
        gap_measured=over_seeds("gap_measured"),
        ece=over_seeds("ece"),
        train_seconds=over_seeds("train_seconds"),
        curves=Curves(train_accuracy=curve("train_accuracy"),
                      test_accuracy=curve("test_accuracy"),
                      train_loss=curve("train_loss"), test_loss=curve("test_loss")),
        log_seed=first.seed,
        log_lines=[epoch_line(r, len(first.history)) for r in first.history],
        eval_line=eval_line(eval_result),
        confusion=cm,
        per_class_accuracy=[float(x) for x in A.per_class_accuracy(cm)],
        most_confused=A.most_confused_pairs(cm, k=5),
        errors_per_seed=float((cm.sum() - np.trace(cm)) / len(runs)),
        calibration=pooled_cal,
        test_interval_first_seed=A.proportion_interval(
            round(first.metrics.test_accuracy * len(labels)), len(labels)),
    )


def _comparison(by_model: dict[str, list[Trained]], models: dict[str, ModelStudy],
                labels: np.ndarray) -> Comparison:
    fc, cnn = by_model["fc"], by_model["cnn"]
    n = min(len(fc), len(cnn))
    fc_acc = [t.metrics.test_accuracy for t in fc[:n]]
    cnn_acc = [t.metrics.test_accuracy for t in cnn[:n]]
    fc_gap = [t.train_eval["accuracy"] - t.metrics.test_accuracy for t in fc[:n]]
    cnn_gap = [t.train_eval["accuracy"] - t.metrics.test_accuracy for t in cnn[:n]]
    return Comparison(
        n_pairs=n,
        improvement=A.paired_difference(fc_acc, cnn_acc),         # cnn - fc
        cnn_wins=int(sum(c > f for f, c in zip(fc_acc, cnn_acc, strict=True))),
        gap_difference=A.paired_difference(cnn_gap, fc_gap),      # fc gap - cnn gap
        mcnemar_first_seed=A.mcnemar_p(fc[0].probs.argmax(1) == labels,
                                       cnn[0].probs.argmax(1) == labels),
        error_reduction=1 - models["cnn"].errors_per_seed / max(
            models["fc"].errors_per_seed, 1e-9),
    )


def _grid(by_model: dict[str, list[Trained]], labels: np.ndarray) -> Grid | None:
    cnn = by_model.get("cnn", next(iter(by_model.values())))[0]
    if len(labels) < GRID_SIZE:
        return None
    idx = A.grid_indices(len(labels), GRID_SIZE, seed=GRID_SEED)
    mistakes = A.most_confident_mistakes(cnn.probs, labels, k=MISTAKES)
    return Grid(
        model=cnn.model, seed=cnn.seed, indices=idx.tolist(), draw_seed=GRID_SEED,
        cnn=A.sample_stats(cnn.probs[idx], labels[idx]),
        mistakes=[Mistake(index=int(i), true=int(labels[i]), pred=int(cnn.probs[i].argmax()),
                          confidence=float(cnn.probs[i].max())) for i in mistakes],
        seed_grid_accuracy=SEED["grid_accuracy"],
        fc=A.sample_stats(by_model["fc"][0].probs[idx], labels[idx]) if "fc" in by_model
        else None,
    )
