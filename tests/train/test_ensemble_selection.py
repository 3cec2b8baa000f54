"""The validation-only ensemble: greedy selection, one-pixel shifts, and a test set read once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mnistlab.train.ensemble as ensemble
from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.train.config import TrainConfig
from mnistlab.train.ensemble import evaluate_ensemble
from mnistlab.train.fit import fit
from mnistlab.train.presets import preset_overrides
from mnistlab.train.selection import greedy_select, pick_weights, shift_images

TINY = {"limit": 2000, "test_limit": 500, "threads": 1, "validation": 600}   # as conftest's



def test_shift_moves_pixels_and_pads_with_zeros() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 3] = 1.0                      # top right corner
    down = shift_images(x, 1, 0)
    assert down[0, 0, 1, 3] == 1.0 and down.sum() == 1.0
    right = shift_images(x, 0, 1)            # off the edge: gone, not wrapped to column 0
    assert right.sum() == 0.0
    left = shift_images(x, 0, -1)
    assert left[0, 0, 0, 2] == 1.0 and left.shape == x.shape
    assert shift_images(x, 0, 0) is x


def _confident(labels: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Probabilities 0.9 on the label, except 0.9 on label + 1 where ``wrong``."""
    guess = np.where(wrong, (labels + 1) % 10, labels)
    p = np.full((len(labels), 10), 0.1 / 9)
    p[np.arange(len(labels)), guess] = 0.9
    return p


def test_greedy_selection_picks_complementary_members_and_skips_a_bad_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 3000)
    a_wrong = np.zeros(3000, dtype=bool)
    a_wrong[:300] = True                     # a and c: 90% right, wrong on different images
    c_wrong = np.zeros(3000, dtype=bool)
    c_wrong[300:600] = True
    bad = _confident(labels, rng.random(3000) < 0.6)
    picks = greedy_select([_confident(labels, a_wrong), bad, _confident(labels, c_wrong)],
                          labels)
    weights = pick_weights(picks, 3)
    assert weights[1] == 0.0                 # 40% right: never helps
    assert weights[0] > 0 and weights[2] > 0
    assert sum(weights) == pytest.approx(1.0)
    # three members wrong on different images: the plain average of all three starts the climb
    d_wrong = np.zeros(3000, dtype=bool)
    d_wrong[600:900] = True
    three = [_confident(labels, w) for w in (a_wrong, c_wrong, d_wrong)]
    assert set(greedy_select(three, labels)) == {0, 1, 2}
    # copies of one model: the first pick stays alone, adding itself changes nothing
    one = _confident(labels, a_wrong)
    assert greedy_select([one, one.copy()], labels) == [0]


@pytest.fixture
def members(ensemble_members: list[str]) -> list[str]:
    return ensemble_members        # three tiny runs sharing a 600-image split (conftest)


def test_choices_depend_on_validation_only(members: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    honest = evaluate_ensemble(members, select="validation", test_limit=500)
    protocol = honest.protocol
    assert protocol.selection == "validation" and protocol.test_passes == 1
    assert protocol.validation_images == 600 and len(protocol.candidates) == 3
    assert sum(m.weight for m in honest.members) == pytest.approx(1.0)
    assert {m.run_dir for m in honest.members} <= set(members)
    # The same choices when the test set is replaced by noise: nothing chosen looked at it.
    real = ensemble.load_split

    def noise(dataset: str, split: str, limit: int = 0):
        x, y = real(dataset, split, limit)
        if split != "test":
            return x, y
        g = torch.Generator().manual_seed(0)
        return torch.rand(x.shape, generator=g), y[torch.randperm(len(y), generator=g)]

    monkeypatch.setattr(ensemble, "load_split", noise)
    blind = evaluate_ensemble(members, select="validation", test_limit=500)
    assert blind.protocol == protocol
    assert [m.weight for m in blind.members] == [m.weight for m in honest.members]
    assert blind.test_accuracy < honest.test_accuracy


def test_runs_without_a_shared_split_get_a_plain_average_or_a_clear_error(
        members: list[str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = tmp_path / "whole"
    overrides = preset_overrides("speedrun", "speedrun") | TINY | {"validation": 0}
    fit(TrainConfig(model="speedrun", **overrides), whole)
    with pytest.raises(UserError, match="validation 0"):
        evaluate_ensemble([members[0], str(whole)], select="validation")
    plain = evaluate_ensemble([members[0], str(whole)], test_limit=500)    # auto
    assert plain.protocol.selection == "none" and "validation 0" in plain.protocol.note
    asked = evaluate_ensemble([members[0], str(whole)], select="none", test_limit=100)
    assert asked.protocol.note == "every member averaged with equal weight; nothing was chosen"
    assert [m.weight for m in plain.members] == [0.5, 0.5]
    assert main(["evaluate", "--ensemble", members[0], str(whole), "--select", "validation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--validation 5000" in err[0]


def test_one_run_gets_its_shifts_and_temperature_chosen_on_validation(
        members: list[str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    alone = evaluate_ensemble([members[0]], test_limit=500)                  # auto
    protocol = alone.protocol
    assert protocol.selection == "validation" and protocol.test_passes == 1
    assert protocol.note.startswith("one run: its test-time shifts and temperature")
    assert len(protocol.candidates) == 1 and [m.weight for m in alone.members] == [1.0]
    assert protocol.shifts in ([[0, 0]], [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]])
    # without shifts the figure is the run's own: the same model, the same images
    if protocol.shifts == [[0, 0]]:
        assert alone.test_accuracy == pytest.approx(alone.members[0].test_accuracy)
    # one run and nothing to choose: refused in one line
    whole = tmp_path / "whole"
    overrides = preset_overrides("speedrun", "speedrun") | TINY | {"validation": 0}
    fit(TrainConfig(model="speedrun", **overrides), whole)
    for run, select in ((members[0], "none"), (str(whole), "auto")):
        with pytest.raises(UserError, match="at least two runs"):
            evaluate_ensemble([run], select=select)
    assert main(["evaluate", "--ensemble", str(whole)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least two runs" in err[0]


def test_cli_prints_the_protocol_in_its_json(members: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--ensemble", *members, "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["test_images"] == 10_000
    protocol = out["protocol"]
    assert protocol["selection"] == "validation" and protocol["test_passes"] == 1
    assert protocol["validation_split"] == "the last 600 mnist training images"
    assert protocol["shifts"] in ([[0, 0]], [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]])
    assert protocol["temperature"] > 0
    assert [c["run_dir"] for c in protocol["candidates"]] == members
