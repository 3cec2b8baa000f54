"""A saved ensemble in the lab: listed beside the runs, compared on a drawing as one model (its
members' probabilities mixed by their weights), its detail, and clear refusals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from lab_helpers import _train_cnn
from mnistlab.inference.ensemble import ENSEMBLE, SavedEnsemble, SavedMember
from mnistlab.serve import create_app

pytestmark = pytest.mark.timeout(120)


def _save(folder: Path, members: list[tuple[Path, float]], accuracy: float) -> None:
    folder.mkdir()
    saved = SavedEnsemble(members=[SavedMember(str(p), w) for p, w in members], shifts=[(0, 0)],
                          dataset="mnist", test_accuracy=accuracy, test_images=500,
                          protocol={"selection": "none"})
    (folder / ENSEMBLE).write_text(json.dumps(saved.to_dict()), encoding="utf-8")


@pytest.fixture(scope="module")
def root(trained_run, tmp_path_factory) -> Iterator[Path]:  # noqa: F811
    base = tmp_path_factory.mktemp("lab-ensemble") / "runs"
    base.mkdir()
    shutil.copytree(trained_run, base / "fc-test")
    shutil.copytree(_train_cnn(str(tmp_path_factory.getbasetemp() / "lab-cnn" / "cnn-test")),
                    base / "cnn-test")
    _save(base / "ens-test", [(base / "fc-test", 0.25), (base / "cnn-test", 0.75)], 0.95)
    _save(base / "ens-broken", [(base / "gone", 1.0)], 0.5)
    (base / "ens-bad").mkdir()
    (base / "ens-bad" / ENSEMBLE).write_text("{not json", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_RUNS_DIR", str(base))
        mp.setenv("MNISTLAB_REPORT_DIR", str(base.parent / "report"))
        yield base


@pytest.fixture(scope="module")
def client(root) -> Iterator[TestClient]:
    with TestClient(create_app(root / "fc-test")) as c:
        yield c


def test_a_saved_ensemble_is_listed_and_a_broken_one_skipped(client):
    body = client.get("/api/lab/runs").json()
    by_id = {run["id"]: run for run in body["runs"]}
    assert set(by_id) == {"fc-test", "cnn-test", "ens-test", "ens-broken"}     # not ens-bad
    ens = by_id["ens-test"]
    assert (ens["model"], ens["family"], ens["status"]) == ("ensemble", "ensemble", "finished")
    assert ens["test_accuracy"] == 0.95 and ens["epochs_done"] == 0
    # the best run of all is the third pick when there is no robust run
    assert body["defaults"] == ["fc-test", "cnn-test", "ens-test"]


def test_compare_mixes_the_members_probabilities_by_their_weights(client, seven):
    r = client.post("/api/lab/compare", content=seven, headers={"Content-Type": "image/png"},
                    params={"models": ["fc-test", "cnn-test", "ens-test"]})
    assert r.status_code == 200, r.text
    fc, cnn, ens = (np.array(m["probabilities"]) for m in r.json()["models"])
    assert np.allclose(ens, 0.25 * fc + 0.75 * cnn, atol=1e-5)
    assert r.json()["models"][2]["family"] == "ensemble"


def test_ensemble_detail_and_refusals(client, seven):
    detail = client.get("/api/lab/runs/ens-test").json()
    assert detail["train"]["members"] == ["fc-test", "cnn-test"]
    assert detail["train"]["weights"] == [0.25, 0.75] and detail["train"]["shifts"] == [[0, 0]]
    assert detail["history"]["rows"] == []
    r = client.get("/api/lab/runs/ens-test/curves.png")
    assert r.status_code == 409 and "ensemble" in r.json()["detail"]
    r = client.post("/api/lab/inside", content=seven, headers={"Content-Type": "image/png"},
                    params={"cnn": "ens-test"})
    assert r.status_code == 422 and "ensemble" in r.json()["detail"]
    r = client.post("/api/lab/compare", content=seven, headers={"Content-Type": "image/png"},
                    params={"models": ["ens-broken"]})
    assert r.status_code == 409 and r.json()["error"] == "unusable_run"
    assert "gone" in r.json()["detail"]
    # beside models that can answer, the broken one says why and the others still answer
    r = client.post("/api/lab/compare", content=seven, headers={"Content-Type": "image/png"},
                    params={"models": ["fc-test", "ens-broken"]})
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["models"]] == ["fc-test"]
    (broken,) = r.json()["unusable"]
    assert broken["id"] == "ens-broken" and broken["error"] == "unusable_run"
    assert "gone" in broken["detail"]


def test_a_served_ensemble_outside_the_run_roots_is_in_the_lab_first(root, tmp_path, seven):
    served = tmp_path / "my-ensemble"
    shutil.copytree(root / "ens-test", served)
    with TestClient(create_app(served)) as c:
        body = c.get("/api/lab/runs").json()
        runs_ = {run["id"]: run for run in body["runs"]}
        assert runs_["my-ensemble"]["root"] == "other"
        assert runs_["my-ensemble"]["family"] == "ensemble"
        # the compare view starts with the model being served, then the usual picks
        assert body["defaults"] == ["my-ensemble", "fc-test", "cnn-test", "ens-test"]
        r = c.post("/api/lab/compare", content=seven, headers={"Content-Type": "image/png"})
        assert r.json()["models"][0]["id"] == "my-ensemble"


def test_an_ensembles_cache_key_follows_its_members_weights(root):
    import os

    from mnistlab import runs
    from mnistlab.serve import catalog

    info = catalog.read_run(root / "ens-test", "ens-test", "runs")
    before = catalog.weights_stamp(info)
    weights = root / "cnn-test" / runs.WEIGHTS
    mtime = weights.stat().st_mtime_ns
    os.utime(weights, ns=(mtime, mtime + 10**9))                 # a member retrained
    assert catalog.weights_stamp(info) != before
    assert catalog.weights_stamp(catalog.read_run(root / "ens-broken", "b", "runs")) == 0
