"""A measured ensemble saved with `evaluate --ensemble --save`, answering predict and serve."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.inference.ensemble import ENSEMBLE, EnsemblePredictor, read_ensemble, save_ensemble
from mnistlab.inference.predict import load_predictor, predict_proba
from mnistlab.perf.synth import render_mnist
from mnistlab.train.calibration import CALIBRATION
from mnistlab.train.ensemble import evaluate_ensemble


@pytest.fixture(scope="module")
def chosen(ensemble_members: list[str]):
    return evaluate_ensemble(ensemble_members, select="validation", test_limit=500)


def test_saved_ensemble_answers_as_it_was_measured(chosen, tmp_path: Path) -> None:
    folder = save_ensemble(chosen, tmp_path / "ens")
    saved = read_ensemble(folder)
    assert [m.run_dir for m in saved.members] == [os.path.abspath(m.run_dir)
                                                  for m in chosen.members]
    assert sum(m.weight for m in saved.members) == pytest.approx(1.0)
    assert saved.protocol["selection"] == "validation" and saved.protocol["test_passes"] == 1
    assert [list(s) for s in saved.shifts] == chosen.protocol.shifts

    predictor = load_predictor(folder)
    assert isinstance(predictor, EnsemblePredictor)
    # calibrated on the validation mix: the temperature the selection chose
    assert predictor.calibration is not None
    assert predictor.calibration.temperature == pytest.approx(chosen.protocol.temperature,
                                                              rel=1e-3)
    images, labels = load_dataset("mnist", "test")
    probs = predict_proba(predictor, images[:500].astype(np.float32) / 255.0)
    assert probs.shape == (500, 10) and np.allclose(probs.sum(1), 1.0)
    # the members ran in fp32 here and in their training precision when measured: the same
    # answers up to a few borderline images
    accuracy = float((probs.argmax(1) == labels[:500]).mean())
    assert abs(accuracy - chosen.test_accuracy) <= 0.01


def test_a_plain_average_saves_no_calibration_and_replaces_an_earlier_one(
        ensemble_members: list[str], chosen, tmp_path: Path) -> None:
    folder = save_ensemble(chosen, tmp_path / "ens")
    assert (folder / CALIBRATION).is_file()
    plain = evaluate_ensemble(ensemble_members[:2], select="none", test_limit=100)
    save_ensemble(plain, folder)                       # the same folder, saved again
    assert not (folder / CALIBRATION).exists()
    predictor = EnsemblePredictor(folder)
    assert predictor.calibration is None and len(predictor.models) == 2
    assert [m.weight for m in predictor.saved.members] == [0.5, 0.5]


def test_predict_says_why_a_plain_average_flags_nothing(
        ensemble_members: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = evaluate_ensemble(ensemble_members[:2], select="none", test_limit=100)
    folder = save_ensemble(plain, tmp_path / "plain")
    images, _ = load_dataset("mnist", "test")
    picture = tmp_path / "digit.png"
    render_mnist(images[0], scale=10).save(picture)
    assert main(["predict", str(folder), str(picture)]) == 0
    out = capsys.readouterr().out
    assert "this ensemble was averaged without a validation split" in out
    assert "this run holds out" not in out


def test_cli_saves_and_predict_serves_it(ensemble_members: list[str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ensemble"
    assert main(["evaluate", "--ensemble", *ensemble_members[:2], "--threads", "1",
                 "--save", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["saved"] == str(folder.resolve()) and (folder / ENSEMBLE).is_file()
    assert out["calibration"]["temperature"] > 0

    images, labels = load_dataset("mnist", "test")
    picture = tmp_path / "digit.png"
    render_mnist(images[0], scale=8).save(picture)
    assert main(["predict", str(folder), str(picture), "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out.strip().splitlines()[-1])
    assert f"model: ensemble of {len(out['members'])} run" in captured.out
    assert answer["predictions"][0]["digit"] == int(labels[0])
    assert answer["predictions"][0]["unsure"] in (True, False)      # calibrated: it can say
    # evaluate on the folder alone says what it is instead of reading the test set again
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "saved ensemble" in err[0] and "read once" in err[0]


def test_bad_folders_and_lost_members_fail_in_one_line(
        ensemble_members: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a training run is never overwritten, and the refusal comes before any work
    run = ensemble_members[0]
    before = sorted(p.name for p in Path(run).iterdir())
    assert main(["evaluate", "--ensemble", *ensemble_members[:2], "--save", run]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "something other than an ensemble" in err[0]
    assert sorted(p.name for p in Path(run).iterdir()) == before
    assert main(["evaluate", ensemble_members[0], "--save", str(tmp_path / "x")]) == 2
    assert "--ensemble" in capsys.readouterr().err
    # a --save that cannot be created: one line, before any evaluation
    (tmp_path / "afile").write_text("mine")
    assert main(["evaluate", "--ensemble", *ensemble_members[:2], "--save",
                 str(tmp_path / "afile" / "ens")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the folder" in err[0] and "--save" in err[0]

    # a member moved away: the ensemble names it
    copies = [str(shutil.copytree(m, tmp_path / f"m{i}"))
              for i, m in enumerate(ensemble_members[:2])]
    folder = save_ensemble(evaluate_ensemble(copies, select="none", test_limit=100),
                           tmp_path / "ens")
    shutil.rmtree(copies[0])
    with pytest.raises(UserError, match="moved or deleted"):
        EnsemblePredictor(folder)

    # a damaged file
    (folder / ENSEMBLE).write_text(json.dumps({"kind": "mnistlab-ensemble", "members": []}))
    with pytest.raises(UserError, match="not a readable ensemble"):
        read_ensemble(folder)
    (folder / ENSEMBLE).write_text(json.dumps({"kind": "mnistlab-ensemble", "members": [[1]],
                                               "shifts": [[0, 0]], "dataset": "mnist",
                                               "test_accuracy": 0.9, "test_images": 1,
                                               "protocol": {}}))
    with pytest.raises(UserError, match="not a readable ensemble"):
        read_ensemble(folder)
    # a hand-edited shift far off the picture
    saved = save_ensemble(evaluate_ensemble(ensemble_members[:2], select="none",
                                            test_limit=100), tmp_path / "far")
    body = json.loads((saved / ENSEMBLE).read_text())
    body["shifts"] = [[0, 0], [100, 100]]
    (saved / ENSEMBLE).write_text(json.dumps(body))
    with pytest.raises(UserError, match="more than 2 pixels"):
        read_ensemble(saved)


def test_a_runs_folder_moved_whole_keeps_its_ensemble(ensemble_members: list[str],
                                                      tmp_path: Path) -> None:
    # the members and the ensemble side by side, as under runs/; then the folder is moved
    home = tmp_path / "runs"
    copies = [str(shutil.copytree(m, home / f"m{i}")) for i, m in enumerate(ensemble_members[:2])]
    save_ensemble(evaluate_ensemble(copies, select="none", test_limit=100), home / "ens")
    assert [m["run_dir"] for m in json.loads((home / "ens" / ENSEMBLE).read_text())["members"]
            ] == ["../m0", "../m1"]
    moved = Path(shutil.move(home, tmp_path / "elsewhere"))
    predictor = EnsemblePredictor(moved / "ens")
    assert [m.run_dir for m in predictor.saved.members] == [str(moved / f"m{i}")
                                                            for i in range(2)]
    assert len(predictor.models) == 2

    # the ensemble's folder copied on its own: its members are found where they were saved
    alone = Path(shutil.copytree(moved / "ens", tmp_path / "alone" / "deeper" / "ens"))
    body = json.loads((alone / ENSEMBLE).read_text())
    for i, m in enumerate(body["members"]):
        m["saved_at"] = str(moved / f"m{i}")            # as if saved where they are now
    (alone / ENSEMBLE).write_text(json.dumps(body))
    assert [m.run_dir for m in EnsemblePredictor(alone).saved.members] == [
        str(moved / f"m{i}") for i in range(2)]

    # an ensemble saved with absolute member paths (as before) still loads
    body = json.loads((moved / "ens" / ENSEMBLE).read_text())
    for i, m in enumerate(body["members"]):
        m["run_dir"] = str((moved / f"m{i}").resolve())
    (moved / "ens" / ENSEMBLE).write_text(json.dumps(body))
    assert len(EnsemblePredictor(moved / "ens").models) == 2


def test_serve_answers_with_a_saved_ensemble(chosen, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app_helpers import png_bytes
    from mnistlab.serve import create_app

    folder = save_ensemble(chosen, tmp_path / "ens")
    images, labels = load_dataset("mnist", "test")
    with TestClient(create_app(str(folder))) as client:
        assert client.get("/healthz").json()["model"] == "ens"
        r = client.post("/api/predict", content=png_bytes(render_mnist(images[1], scale=10)),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert r.json()["digit"] == int(labels[1])


def test_members_vote_on_unlike_the_digits_by_weighted_majority(chosen, tmp_path: Path
                                                                ) -> None:
    from mnistlab.inference.predict import assess
    from mnistlab.train.calibration import UNLIKE_DIGITS, load_calibration
    from mnistlab.train.typicality import features_and_logits

    predictor = EnsemblePredictor(save_ensemble(chosen, tmp_path / "ens"))
    assert all(t is not None for t in predictor.typicalities)    # trained with validation
    images, _ = load_dataset("mnist", "test")
    digits = images[:200].astype(np.float32)[:, None] / 255.0
    x = np.concatenate([digits, 1.0 - digits])          # the same digits, as black on white
    logits, far = predictor.logits_and_far(x)
    assert np.array_equal(logits, predictor.logits(x))  # the vote changes no answer
    assert far is not None
    # each member judges the unshifted picture against its own fit; the weighted majority wins
    votes = np.zeros(len(x))
    for model, member in zip(predictor.models, predictor.saved.members, strict=True):
        run_cal = load_calibration(member.run_dir)
        assert run_cal is not None
        features, _ = features_and_logits(model, torch.from_numpy(x))
        votes += member.weight * run_cal.far(features)
    assert np.array_equal(far, votes > 0.5)
    assert far[:200].mean() < 0.1 and far[200:].mean() > 0.8
    # the touching-digit judge weighs the members' distances, each over its own threshold
    same, distance = predictor.logits_and_distance(x)
    assert np.array_equal(same, logits) and distance is not None
    mean = np.zeros(len(x))
    for model, member in zip(predictor.models, predictor.saved.members, strict=True):
        fit = load_calibration(member.run_dir).typicality
        features, _ = features_and_logits(model, torch.from_numpy(x))
        mean += member.weight * fit.distance(features) / fit.far_above
    assert np.allclose(distance, mean / sum(m.weight for m in predictor.saved.members))
    from mnistlab.inference.predict import judgement
    said = judgement(predictor, x[:, 0])
    assert said.distance is not None and np.allclose(said.distance, distance)
    reasons = assess(predictor, x).reasons
    assert reasons is not None and UNLIKE_DIGITS in reasons[200:]
    predictor.typicalities = [None] * len(predictor.typicalities)   # members without a fit
    assert predictor.logits_and_far(x)[1] is None
    assert predictor.logits_and_distance(x)[1] is None
    assert judgement(predictor, x[:, 0]).distance is None
    assert UNLIKE_DIGITS not in (assess(predictor, x).reasons or [])
