"""The other-source set and its evaluation: fixed pictures, per-part accuracy, numbers."""

from __future__ import annotations

import numpy as np
import pytest

from app_helpers import trained_run  # noqa: F401  (fixture)
from mnistlab.data.realworld import PARTS, missing_parts, realworld_set
from mnistlab.errors import UserError
from mnistlab.inference.composed import compose_numbers
from mnistlab.inference.predict import load_predictor
from mnistlab.inference.realworld import evaluate_realworld


@pytest.fixture(scope="module")
def small_set():
    return realworld_set(["strokes"], small=True)


def test_the_set_is_fixed_and_balanced(small_set):
    again = realworld_set(["strokes"], small=True)
    assert len(again) == len(small_set) > 50
    assert all(np.array_equal(a.picture, b.picture) for a, b in zip(again, small_set,
                                                                     strict=True))
    assert np.bincount([s.label for s in small_set], minlength=10).min() > 0
    assert all(s.picture.dtype == np.uint8 and s.picture.ndim == 2 for s in small_set)
    fonts = realworld_set(["fonts"], small=True)
    assert {s.part for s in fonts} == {"fonts"}
    assert np.bincount([s.label for s in fonts], minlength=10).min() >= 20   # a face each
    with pytest.raises(UserError, match="unknown part"):
        realworld_set(["mnist"])
    assert set(missing_parts()) <= set(PARTS)


def test_numbers_are_composed_from_one_part(small_set):
    numbers = compose_numbers(small_set, 20, seed=1)
    assert len(numbers) == 20
    assert all(2 <= len(n.spelled) <= 4 and n.spelled.isdigit() for n in numbers)
    assert all(n.picture.dtype == np.uint8 and n.picture.shape[0] == 160 for n in numbers)
    assert {n.part for n in numbers} == {s.part for s in small_set}


def test_numbers_with_marks_spell_them_and_keep_the_digits(small_set):
    marked = compose_numbers(small_set, 40, seed=1, marks=True)
    for picture, spelled, _ in marked:
        assert sum(c in ".:-" for c in spelled) == 1, spelled
        assert spelled[0].isdigit() and spelled[-1].isdigit()
        assert 2 <= sum(c.isdigit() for c in spelled) <= 4 and picture.shape[0] == 160
    assert {n.spelled.strip("0123456789")[0] for n in marked} == set(".:-")


def test_marks_are_found_where_they_were_drawn(small_set):
    from mnistlab.inference.number import read_layout

    right = 0
    for picture, spelled, _ in compose_numbers(small_set, 30, seed=2, marks=True):
        layout = read_layout(picture.astype(np.float32) / 255)
        at = next(i for i, c in enumerate(spelled) if not c.isdigit())
        right += [(m.char, m.before) for m in layout.marks] == [(spelled[at], at)]
    assert right >= 27, right


def test_evaluation_per_part_and_numbers(small_set, trained_run):  # noqa: F811
    result = evaluate_realworld(load_predictor(trained_run), small_set, numbers=10)
    assert set(result.parts) == {"strokes"}
    assert result.images == len(small_set)
    for score in result.parts.values():
        assert 0 <= score.refused <= score.images
        assert 0.3 < score.accuracy <= 1.0          # a 94% MNIST FC reads many of them
    assert result.numbers is not None and result.numbers.numbers == 10
    assert 0 <= result.numbers.read_whole <= result.numbers.right_count <= 10
    assert result.numbers.parts == {"strokes": (result.numbers.read_whole, 10)}
    out = result.to_dict()
    assert out["images"] == len(small_set) and "numbers" in out
    assert out["numbers"]["marks"] is False and out["numbers"]["marks_right"] == 0
    assert out["numbers"]["parts"]["strokes"]["numbers"] == 10
    marked = evaluate_realworld(load_predictor(trained_run), small_set, numbers=10, marks=True)
    assert marked.numbers is not None and marked.numbers.marks
    # the marks do not depend on the model: drawn strokes' marks are found
    assert 8 <= marked.numbers.marks_right <= 10


def test_unsure_rates_need_a_calibrated_run(tmp_path, trained_run):  # noqa: F811
    from mnistlab.data import load_dataset
    from mnistlab.data.realworld import non_digits
    from mnistlab.inference.realworld import unsure_rates
    from mnistlab.train.config import TrainConfig
    from mnistlab.train.fit import fit

    pictures = non_digits(8)
    assert {s.part for s in pictures} == {"letters", "scribbles"}
    assert all(s.label == -1 for s in pictures)
    mnist = load_dataset("mnist", "test")[0][:300]
    with pytest.raises(UserError, match="not calibrated"):
        unsure_rates(load_predictor(trained_run), mnist, pictures)
    fit(TrainConfig(model="fc", optimizer="sgd", lr=0.1, epochs=1, limit=4000,
                    test_limit=500, validation=2000, threads=1), tmp_path / "cal")
    rates = unsure_rates(load_predictor(tmp_path / "cal"), mnist, pictures)
    assert 0.0 <= rates.mnist_test < 0.2                     # ~1% by construction, on validation
    assert set(rates.by_part) == {"letters", "scribbles"}
    assert all(0.0 <= v <= 1.0 for v in rates.by_part.values())


def test_touching_numbers_are_the_same_numbers_run_together(small_set):
    """Nothing else measures how touching digits are cut apart: the same digits as the plain
    numbers, their ink running into one piece."""
    from scipy import ndimage

    from mnistlab.inference.preprocess import ink_image

    plain = compose_numbers(small_set, 20, seed=1)
    touching = compose_numbers(small_set, 20, seed=1, touching=True)
    assert [n.spelled for n in touching] == [n.spelled for n in plain]
    one = 0
    for apart, picture in zip((n.picture for n in plain), (n.picture for n in touching),
                              strict=True):
        assert picture.dtype == np.uint8 and picture.shape[0] == 160
        assert picture.shape[1] < apart.shape[1]
        mask = ink_image(picture.astype(np.float32) / 255).mask
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        one += int((sizes > 0.05 * sizes.max()).sum()) == 1     # specks of noise aside
    assert one >= 17, one
    # a mark keeps its gap: the digits on either side touch their own neighbours only
    marked = compose_numbers(small_set, 20, seed=1, marks=True, touching=True)
    assert [n.spelled for n in marked] == [n.spelled for n in compose_numbers(
        small_set, 20, seed=1, marks=True)]


def test_touching_numbers_are_reported_beside_the_numbers(small_set, trained_run,  # noqa: F811
                                                          monkeypatch, capsys):
    import json

    from mnistlab.cli import main

    predictor = load_predictor(trained_run)
    apart = evaluate_realworld(predictor, small_set, numbers=6)
    both = evaluate_realworld(predictor, small_set, numbers=6, touching=True)
    assert apart.touching_numbers is None and "touching_numbers" not in apart.to_dict()
    assert both.numbers == apart.numbers                  # the plain figure is unchanged
    assert both.touching_numbers is not None and both.touching_numbers.numbers == 6
    assert both.touching_numbers.digits == apart.numbers.digits     # the same numbers
    monkeypatch.setattr("mnistlab.data.realworld.realworld_set",
                        lambda parts, small=False: small_set)
    assert main(["evaluate-real", str(trained_run), "--numbers", "4", "--touching",
                 "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["touching_numbers"]["numbers"] == report["numbers"]["numbers"] == 4
    assert 0 <= report["touching_numbers"]["read_whole"] <= 4
    assert "  touching " in out
    assert out.count("by part: strokes ") == 2             # the plain and the touching ones
    assert report["touching_numbers"]["parts"]["strokes"]["numbers"] == 4
