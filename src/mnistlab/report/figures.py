"""The report's PNGs, drawn by ``mnistlab.report.plots`` from the report's numbers and the CNN's
test-set probabilities. Returns ``{name: FigureRef("figures/<name>.png", caption)}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnistlab.report import fmt, plots
from mnistlab.report.inputs import StudyData, Trained
from mnistlab.report.schema import FigureRef, Report
from mnistlab.report.seed import SEED

RELIABILITY_MIN_COUNT = 10   # a bin with fewer predictions has a meaningless accuracy


def draw_all(report: Report, trained: Sequence[Trained], data: StudyData,
             folder: Path) -> dict[str, FigureRef]:
    """Draw every figure into ``folder`` (the loop's, drawn by its stage, is only listed)."""
    folder = Path(folder)
    models = report.models
    out: dict[str, FigureRef] = {}

    def save(name: str, fig: Figure, caption: str) -> None:
        plots.save_figure(fig, folder / f"{name}.png")
        out[name] = FigureRef(path=f"figures/{name}.png", caption=caption)

    n = len(report.meta.seeds)
    save("learning_curves", plots.learning_curves(
        {m: models[m].curves.arrays() for m in models}),
        f"Accuracy and loss per epoch, train (solid, dots: running mean over the epoch as "
        f"Keras reports it) and test (dashed, hollow squares: after the epoch); mean of {n} "
        f"seed(s).")
    save("seed_comparison", plots.seed_comparison(
        {m: [r.test_accuracy for r in report.runs_of(m)] for m in models},
        {m: (None if models[m].test_accuracy.ci_low is None else
             (models[m].test_accuracy.ci_low, models[m].test_accuracy.ci_high))
         for m in models},
        {m: SEED[f"{m}_test_accuracy"] for m in models if f"{m}_test_accuracy" in SEED}),
        "Test accuracy of every seed (dots), mean (bar), 95% t-interval of the mean (whisker) "
        "and the seed report's single value (star).")

    grid = report.grid
    if grid:
        cnn = next(t for t in trained if t.model == grid.model and t.seed == grid.seed)
        images, labels = data.test_images, data.test_labels
        idx = np.asarray(grid.indices)
        g = grid.cnn
        save("fig5_prediction_grid", plots.prediction_grid(
            images[idx], cnn.probs[idx], labels[idx], indices=idx,
            title=f"{grid.model.upper()} (seed {grid.seed}) on 20 test images drawn with "
                  f"seed {grid.draw_seed}: {g.correct}/{g.n} right"),
            "Figure 5: each image labelled \"predicted confidence% (true)\", blue when right, "
            "red when wrong, beside its ten class probabilities (red bar: predicted class, "
            "blue bar: true class). Small grey numbers: test-set index.")
        wrong = np.asarray([m.index for m in grid.mistakes], dtype=np.int64)
        if len(wrong):
            save("fig5b_confident_mistakes", plots.prediction_grid(
                images[wrong], cnn.probs[wrong], labels[wrong], indices=wrong,
                title=f"The {grid.model.upper()}'s {len(wrong)} most confident mistakes "
                      f"(seed {grid.seed})"),
                "The CNN's most confident wrong predictions on the test set, most confident "
                "first (label: predicted confidence% (true)); look at how many a person "
                "would also have read as the predicted digit.")

    cms = {m: models[m].confusion for m in models}
    save("confusion_matrices", plots.confusion_matrices(cms, note=f"{n} seeds" if n > 1 else ""),
         f"Confusion matrices summed over {n} seed(s) (rows: true digit, columns: predicted); "
         f"off-diagonal counts in red; log colour scale.")
    save("per_class_accuracy", plots.per_class_accuracy(
        {m: np.asarray(models[m].per_class_accuracy) for m in models}),
        "Test error of each digit (100% minus its recall), pooled over seeds; the table "
        "below gives each digit's accuracy.")
    save("reliability", plots.reliability_diagram({m: models[m].calibration for m in models},
                                                  min_count=RELIABILITY_MIN_COUNT),
         f"Reliability diagram, the test predictions of all {n} seed(s) pooled: accuracy against "
         f"confidence in {next(iter(models.values())).calibration.n_bins} equal-width "
         "bins (bins with fewer than "
         f"{RELIABILITY_MIN_COUNT} predictions left off); points on the diagonal are "
         "calibrated, below it over-confident. Right: how many predictions fall in each bin. "
         "Expected calibration error of the pooled predictions: "
         + ", ".join(f"{m.upper()} {fmt.pct(models[m].calibration.ece)}" for m in models)
         + "; per seed (mean ± sd): "
         + ", ".join(f"{m.upper()} {fmt.mean_sd(models[m].ece)}" for m in models) + ".")
    if report.loop.figure:
        out["fig6_custom_loop_loss"] = FigureRef(
            path=f"figures/{report.loop.figure.name}",
            caption="Figure 6: loss of the explicit training loop per iteration (raw and "
                    "exponentially smoothed), log scale.")
    return out
