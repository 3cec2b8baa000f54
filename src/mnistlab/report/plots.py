"""The report's figures: one function per figure, each returning a matplotlib Figure.

Headless: figures are built with the object-oriented API (``Figure``, no pyplot state), so they
render with Agg anywhere, from any thread (the web app too). Functions take arrays and the
results of ``mnistlab.report.analysis`` (``Calibration``), never files, so the CLI, the report
and tests draw the same figure from the same numbers.
``save_figure`` writes a PNG atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from mnistlab.atomic import atomic_path
from mnistlab.report.analysis import Calibration

# One colour per model, the same in every figure.
MODEL_COLORS = {"fc": "tab:orange", "cnn": "tab:blue"}
RIGHT, WRONG = "tab:blue", "tab:red"


def model_color(name: str) -> str:
    return MODEL_COLORS.get(name, "tab:green")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Write ``fig`` as a PNG (atomically)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


# --- training ------------------------------------------------------------------------------

def learning_curves(curves: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Accuracy and loss per epoch, train (solid, dots) and test (dashed, hollow squares), for
    each model.

    ``curves[model][key]`` is an array (seeds, epochs) for key in train_accuracy, test_accuracy,
    train_loss, test_loss (a missing key is skipped). The line is the mean over seeds; the
    band spans the lowest to the highest seed.
    """
    fig = Figure(figsize=(11, 4.2))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for name, c in curves.items():
        color = model_color(name)
        # solid dots for train, hollow squares for test: told apart when there is one epoch,
        # a dot each, and the line styles show nothing
        for split, style, marker, face in (("train", "-", "o", color), ("test", "--", "s",
                                                                          "white")):
            for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
                values = c.get(f"{split}_{metric}")
                if values is None:
                    continue
                v = np.atleast_2d(np.asarray(values, dtype=float))
                if metric == "accuracy":
                    v = v * 100
                epochs = np.arange(1, v.shape[1] + 1)
                ax.plot(epochs, v.mean(axis=0), style, color=color, marker=marker, ms=5,
                        markerfacecolor=face, label=f"{name.upper()} {split}")
                if v.shape[0] > 1:
                    ax.fill_between(epochs, v.min(axis=0), v.max(axis=0), color=color, alpha=0.15)
    n_seeds = max((np.atleast_2d(np.asarray(v)).shape[0] for c in curves.values()
                   for v in c.values()), default=1)
    band = f" (mean of {n_seeds} seeds; band = min..max)" if n_seeds > 1 else ""
    ax_acc.set(title="Accuracy per epoch" + band, xlabel="epoch", ylabel="accuracy (%)")
    ax_loss.set(title="Cross-entropy loss per epoch", xlabel="epoch", ylabel="loss")
    n_epochs = max((np.atleast_2d(np.asarray(v)).shape[1] for c in curves.values()
                    for v in c.values()), default=1)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_xticks(range(1, n_epochs + 1))
        ax.set_xlim(0.7, n_epochs + 0.3)
    fig.tight_layout()
    return fig


def seed_comparison(accuracies: Mapping[str, Sequence[float]],
                    intervals: Mapping[str, tuple[float, float] | None],
                    reference: Mapping[str, float] | None = None) -> Figure:
    """Test accuracy of every seed (dots), the mean (bar) and its 95% t-interval, per model.

    ``accuracies[model]`` are fractions; ``intervals[model]`` is (low, high) or None;
    ``reference[model]`` (optional, a fraction) is drawn as a star: the seed report's figure.
    """
    names = list(accuracies)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, name in enumerate(names):
        acc = np.asarray(accuracies[name], dtype=float) * 100
        color = model_color(name)
        jitter = np.linspace(-0.08, 0.08, len(acc)) if len(acc) > 1 else np.zeros(1)
        ax.scatter(i + jitter, acc, color=color, alpha=0.7, zorder=3,
                   label=f"{name.upper()} seeds (n={len(acc)})")
        ax.hlines(acc.mean(), i - 0.25, i + 0.25, color="black", lw=2, zorder=4)
        ci = intervals.get(name)
        if ci is not None:
            ax.errorbar(i + 0.3, acc.mean(), yerr=[[acc.mean() - ci[0] * 100],
                                                   [ci[1] * 100 - acc.mean()]],
                        fmt="none", ecolor="black", capsize=5, lw=1.5, zorder=4)
        if reference and name in reference:
            ax.scatter(i - 0.3, reference[name] * 100, marker="*", s=140, color="gray",
                       zorder=4, label="seed report" if i == 0 else None)
    ax.set_xticks(range(len(names)), [n.upper() for n in names])
    ax.set(title="Test accuracy by seed (bar = mean, whisker = 95% CI)",
           ylabel="test accuracy (%)", xlim=(-0.6, len(names) - 0.4))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# --- predictions ---------------------------------------------------------------------------

def prediction_grid(images: np.ndarray, probs: np.ndarray, labels: np.ndarray, *,
                    title: str, indices: Sequence[int] | None = None,
                    rows: int = 5, cols: int = 4) -> Figure:
    """``rows x cols`` cells; each is the image labelled "pred conf% (true)" beside its ten
    probabilities as bars (as in the TensorFlow classification tutorial).

    Label blue when right, red when wrong; bars: predicted class red, true class blue.
    ``images`` uint8 or float (N, 28, 28), ``probs`` (N, 10), ``labels`` (N,), N <= rows*cols;
    ``indices`` (optional) are the test-set ids printed small above each image.
    """
    n = len(images)
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows}x{cols} grid")
    fig = Figure(figsize=(2.6 * cols * 1.15, 2.0 * rows))
    axes = fig.subplots(rows, 2 * cols, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 1.15] * cols})
    for k in range(rows * cols):
        ax_img, ax_bar = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        if k >= n:
            ax_img.axis("off")
            ax_bar.axis("off")
            continue
        p = np.asarray(probs[k], dtype=float)
        pred, true = int(p.argmax()), int(labels[k])
        color = RIGHT if pred == true else WRONG
        ax_img.imshow(np.asarray(images[k]), cmap="binary")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_xlabel(f"{pred} {100 * p[pred]:.0f}% ({true})", color=color, fontsize=10)
        if indices is not None:
            ax_img.set_title(f"#{int(indices[k])}", fontsize=7, color="gray")
        bars = ax_bar.bar(range(10), p, color="#777777")
        bars[pred].set_color(WRONG)
        bars[true].set_color(RIGHT)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_xticks(range(10), [str(d) for d in range(10)], fontsize=6)
        ax_bar.set_yticks([])
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: Mapping[str, np.ndarray], note: str = "") -> Figure:
    """One heat map per model: rows true digit, columns predicted, counts in the cells;
    ``note`` (e.g. "3 seeds") goes into each title.

    The colour scale is logarithmic so the few hundred errors show beside ~1,000 correct.
    """
    fig = Figure(figsize=(5.6 * len(matrices), 5))
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (name, cm) in zip(axes, matrices.items(), strict=True):
        shown = np.where(cm > 0, cm, np.nan)
        im = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(2, cm.max())))
        for t in range(cm.shape[0]):
            for p in range(cm.shape[1]):
                if cm[t, p]:
                    dark = cm[t, p] > cm.max() ** 0.7
                    ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=7,
                            color="white" if dark else ("black" if t == p else "tab:red"))
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        errors = int(cm.sum() - np.trace(cm))
        ax.set(title=f"{name.upper()}: {errors:,} errors in {int(cm.sum()):,} predictions"
                     + (f" ({note})" if note else ""),
               xlabel="predicted digit", ylabel="true digit")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images (log scale)")
    fig.tight_layout()
    return fig


def per_class_accuracy(accuracies: Mapping[str, np.ndarray]) -> Figure:
    """Test error of each digit (100% - its accuracy), grouped bars per model from zero: a bar's
    length is the error itself. Bars of accuracy on an axis zoomed to the spread (what this drew
    before) made a tenth of a point look like a collapse."""
    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(accuracies))
    for i, (name, acc) in enumerate(accuracies.items()):
        error = 100 - np.asarray(acc, dtype=float) * 100
        ax.bar(np.arange(10) + (i - (len(accuracies) - 1) / 2) * width, error, width,
               color=model_color(name), label=name.upper())
    ax.set_ylim(bottom=0)
    ax.set_xticks(range(10))
    ax.set(title="Test error per digit (lower is better)", xlabel="true digit",
           ylabel="error (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # clear of the bars
    fig.tight_layout()
    return fig


def reliability_diagram(calibrations: Mapping[str, Calibration], min_count: int = 10) -> Figure:
    """Accuracy against confidence per bin for each model, beside how many predictions fall
    in each bin (log scale: almost all sit in the top bin).

    ``calibrations[model]`` is ``analysis.calibration(...)``. Bins holding fewer than
    ``min_count`` predictions are left off the left panel: their accuracy is noise.
    """
    fig = Figure(figsize=(11, 4.4))
    ax, ax_n = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for name, cal in calibrations.items():
        used = [b for b in cal.bins if b.count >= min_count]
        ax.plot([b.confidence for b in used], [b.accuracy for b in used], "o-",
                color=model_color(name),
                label=f"{name.upper()} (ECE {100 * cal.ece:.2f}%)")
        mids = [(b.low + b.high) / 2 for b in cal.bins]
        counts = [b.count for b in cal.bins]
        offset = 0.25 / cal.n_bins * (1 if name == "cnn" else -1)
        ax_n.bar(np.asarray(mids) + offset, counts, width=0.45 / cal.n_bins,
                 color=model_color(name), label=name.upper())
    ax.set(title=f"Reliability: is the confidence earned? (bins with >= {min_count} images)",
           xlabel="mean confidence in bin",
           ylabel="accuracy in bin", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax_n.set_yscale("log")
    ax_n.set(title="Predictions per confidence bin", xlabel="confidence (max probability)",
             ylabel="test images (log scale)", xlim=(0, 1.02))
    ax_n.grid(axis="y", alpha=0.3)
    ax_n.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig

