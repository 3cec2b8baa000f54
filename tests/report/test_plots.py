"""plots: every figure renders from synthetic numbers to a valid PNG, with the promised labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnistlab.report import analysis as A
from mnistlab.report import plots as P

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fake():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    logits = rng.normal(size=(200, 10))
    logits[np.arange(200), labels] += 4.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    images = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    return images, probs, labels


def _valid_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_prediction_grid_labels_and_colours(fake, tmp_path):
    images, probs, labels = fake
    probs = probs[:20].copy()
    probs[3] = np.eye(10)[(labels[3] + 1) % 10] * 0.9 + 0.01  # a confident mistake
    fig = P.prediction_grid(images[:20], probs, labels[:20], title="grid",
                            indices=np.arange(20))
    texts = [(ax.get_xlabel(), ax.xaxis.label.get_color()) for ax in fig.axes[0::2]]
    assert len(texts) == 20
    pred3 = int(probs[3].argmax())
    assert texts[3][0] == f"{pred3} {100 * probs[3].max():.0f}% ({labels[3]})"
    assert texts[3][1] == P.WRONG
    right = [t for k, t in enumerate(texts) if probs[k].argmax() == labels[k]]
    assert right and all(color == P.RIGHT for _, color in right)
    P.save_figure(fig, tmp_path / "grid.png")
    w, h = _valid_png(tmp_path / "grid.png")
    assert w > 800 and h > 600
    with pytest.raises(ValueError):
        P.prediction_grid(images[:21], fake[1][:21], labels[:21], title="too many")


def test_partial_grid_hides_empty_cells(fake, tmp_path):
    images, probs, labels = fake
    fig = P.prediction_grid(images[:3], probs[:3], labels[:3], title="three")
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 6


def test_every_other_figure_renders(fake, tmp_path):
    _, probs, labels = fake
    cms = {"fc": A.confusion_matrix(labels, np.roll(probs, 1, 1).argmax(1)),
           "cnn": A.confusion_matrix(labels, probs.argmax(1))}
    curves = {m: {k: np.linspace(0.5, 0.9, 10).reshape(2, 5) for k in
                  ("train_accuracy", "test_accuracy", "train_loss", "test_loss")}
              for m in ("fc", "cnn")}
    figures = {
        "curves": P.learning_curves(curves),
        "seeds": P.seed_comparison({"fc": [0.96, 0.97], "cnn": [0.985]},
                                   {"fc": (0.9, 1.0), "cnn": None}, {"fc": 0.9689}),
        "confusion": P.confusion_matrices(cms),
        "per_class": P.per_class_accuracy({k: A.per_class_accuracy(v) for k, v in cms.items()}),
        "reliability": P.reliability_diagram({"cnn": A.calibration(probs, labels)}),
    }
    for name, fig in figures.items():
        assert all(ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"), name
        P.save_figure(fig, tmp_path / f"{name}.png")
        _valid_png(tmp_path / f"{name}.png")
    titles = [ax.get_title() for ax in figures["confusion"].axes]
    assert any(t.startswith("CNN:") for t in titles)
    legend = [t.get_text() for t in figures["curves"].axes[0].get_legend().get_texts()]
    assert legend == ["FC train", "FC test", "CNN train", "CNN test"]


def test_per_class_figure_draws_each_digits_error_from_zero():
    # bars of accuracy on an axis zoomed to the spread made 0.1 points look like a collapse
    acc = {"fc": np.array([0.97] * 9 + [0.96]), "cnn": np.array([0.99] * 9 + [0.985])}
    ax = P.per_class_accuracy(acc).axes[0]
    assert ax.get_ylim()[0] == 0
    heights = sorted(round(b.get_height(), 6) for b in ax.patches)
    assert heights[0] == pytest.approx(1.0) and heights[-1] == pytest.approx(4.0)
    assert "error" in ax.get_ylabel()
