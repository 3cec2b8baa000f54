"""analysis: statistics over seeds, confusion, calibration and sample choice, on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistlab.report import analysis as A


def test_summarize_matches_the_t_interval_by_hand():
    s = A.summarize([0.96, 0.97, 0.98])
    assert s.n == 3 and s.mean == pytest.approx(0.97)
    assert s.std == pytest.approx(0.01)
    # t_{0.975, df=2} = 4.302653; half width = t * std / sqrt(3)
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert s.ci_low == pytest.approx(0.97 - half, abs=1e-7)
    assert s.ci_high == pytest.approx(0.97 + half, abs=1e-7)
    assert s.half_width == pytest.approx(half, abs=1e-7)
    assert s.to_dict()["half_width"] == pytest.approx(half, abs=1e-7)


def test_one_value_has_no_spread():
    s = A.summarize([0.5])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high, s.half_width) == (1, 0.5, None, None, None,
                                                                       None)
    with pytest.raises(ValueError):
        A.summarize([])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_interval_contains_the_mean(values):
    s = A.summarize(values)
    assert s.ci_low <= s.mean + 1e-12 and s.mean <= s.ci_high + 1e-12


def test_paired_difference_is_the_summary_of_differences():
    a, b = [0.960, 0.970, 0.965], [0.981, 0.989, 0.986]  # b ~ a + 0.02: a shared per-seed shift
    d = A.paired_difference(a, b)
    ref = A.summarize(np.subtract(b, a))
    assert d == ref
    # Pairing cancels the shared per-seed shift: the paired interval is narrower here.
    assert d.mean == pytest.approx(0.061 / 3)
    assert d.half_width < A.summarize(a).half_width / 3
    with pytest.raises(ValueError):
        A.paired_difference([1, 2], [1, 2, 3])


def test_proportion_interval_and_mcnemar():
    lo, hi = A.proportion_interval(9689, 10000)
    assert lo < 0.9689 < hi and hi - lo < 0.01
    ca = np.array([1, 1, 0, 0, 1, 0], bool)
    cb = np.array([1, 1, 1, 1, 1, 1], bool)
    m = A.mcnemar_p(ca, cb)
    assert (m.only_a_correct, m.only_b_correct, m.disagreements) == (0, 3, 3)
    assert m.p_value == pytest.approx(0.25)  # two-sided exact binomial, 3 of 3
    assert m.to_dict() == {"only_a_correct": 0, "only_b_correct": 3, "p_value": m.p_value}
    assert A.mcnemar_p(ca, ca).p_value == 1.0


def test_train_test_gap():
    assert A.train_test_gap({"train_accuracy": 0.972, "test_accuracy": 0.9689}) == \
        pytest.approx(0.0031)


def test_confusion_matrix_per_class_and_pairs():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 1, 1, 2, 2])
    cm = A.confusion_matrix(labels, preds, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 2, 2]]
    assert A.per_class_accuracy(cm) == pytest.approx([0.5, 2 / 3, 0.5])
    pairs = A.most_confused_pairs(cm, k=2)
    assert pairs == [A.ConfusedPair(true=2, pred=1, count=2), A.ConfusedPair(true=0, pred=1,
                                                                            count=1)]
    assert [p.to_dict() for p in pairs] == [{"true": 2, "pred": 1, "count": 2},
                                            {"true": 0, "pred": 1, "count": 1}]
    cm10 = A.confusion_matrix(labels, preds)
    assert cm10.shape == (10, 10) and cm10.sum() == len(labels)
    assert np.isnan(A.per_class_accuracy(cm10)[5])  # a class with no images


def _onehot(idx, n=10, p=1.0):
    out = np.full((len(idx), n), (1 - p) / (n - 1))
    out[np.arange(len(idx)), idx] = p
    return out


def test_calibration_of_perfect_and_overconfident_models():
    labels = np.arange(100) % 10
    perfect = A.calibration(_onehot(labels), labels)
    assert perfect.ece == pytest.approx(0.0)
    assert perfect.share_confident_99 == 1.0 and perfect.accuracy_confident_99 == 1.0

    # 90% confident everywhere, right only half the time: ECE = |0.5 - 0.9| = 0.4.
    preds = np.where(np.arange(100) < 50, labels, (labels + 1) % 10)
    over = A.calibration(_onehot(preds, p=0.9), labels, n_bins=10)
    assert over.ece == pytest.approx(0.4)
    assert over.accuracy == 0.5 and over.mean_confidence == pytest.approx(0.9)
    assert sum(b.count for b in over.bins) == 100
    assert over.accuracy_confident_99 is None
    full = [b for b in over.bins if b.count]
    assert len(full) == 1 and full[0].low < 0.9 <= full[0].high
    # report.json's form: the same keys as before the results were typed, bins as dicts.
    d = over.to_dict()
    assert list(d) == ["ece", "n_bins", "mean_confidence", "accuracy", "share_confident_99",
                       "accuracy_confident_99", "bins"]
    assert d["bins"][0] == {"low": 0.0, "high": 0.1, "count": 0, "accuracy": None,
                            "confidence": None}


def test_grid_indices_are_deterministic_unique_sorted():
    a, b = A.grid_indices(10_000), A.grid_indices(10_000)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 20
    assert np.all(np.diff(a) > 0) and a.max() < 10_000
    assert not np.array_equal(a, A.grid_indices(10_000, seed=1))
    with pytest.raises(ValueError):
        A.grid_indices(5, n=20)


def test_most_confident_mistakes_and_sample_stats():
    labels = np.array([0, 1, 2, 3, 4])
    probs = np.vstack([_onehot([0])[0], _onehot([5], p=0.7)[0], _onehot([2])[0],
                       _onehot([9], p=0.95)[0], _onehot([6], p=0.7)[0]])
    assert A.most_confident_mistakes(probs, labels).tolist() == [3, 1, 4]
    assert A.most_confident_mistakes(probs, labels, k=1).tolist() == [3]
    s = A.sample_stats(probs, labels)
    assert (s.n, s.correct, s.shown_as_100) == (5, 2, 2)
    assert s.accuracy == pytest.approx(0.4)
    assert list(s.to_dict()) == ["n", "correct", "accuracy", "mean_confidence", "shown_as_100"]
