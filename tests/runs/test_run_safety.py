"""Nothing silently wrong: damaged tensor bytes are refused, a run stopped before its first
epoch can be resumed or replaced, an unfinished run says so when it is used."""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path

import pytest
from PIL import Image

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.fit import Callback, TrainingInterrupted, fit

# Written by mnistlab 0.1.0, before model files recorded a hash of their tensors.
V010 = Path(__file__).parent / "fixtures" / "fc-v0.1.0"
SMALL = ["--limit", "500", "--test-limit", "100", "--epochs", "1", "--threads", "1"]


def small_config(**overrides: object) -> TrainConfig:
    values: dict = {"model": "fc", "optimizer": "sgd", "lr": 0.1, "epochs": 1, "limit": 500,
                    "test_limit": 100, "threads": 1, "precision": "fp32", **overrides}
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "fc-small"
    fit(small_config(), run_dir)
    return run_dir


@pytest.fixture
def run_copy(small_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.fixture
def digit_png(tmp_path: Path) -> Path:
    images, _ = load_dataset("mnist", "test")
    path = tmp_path / "digit.png"
    Image.fromarray(images[0]).save(path)
    return path


def rot(path: Path) -> None:
    """Keep the safetensors header, replace the tensor bytes after it (bit rot, a bad copy)."""
    data = path.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]
    path.write_bytes(data[:start] + b"\xff" * (len(data) - start))


def one_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note: ")]


# --- 1. tensor bytes checked against a SHA-256 recorded when written ------------------------

def test_weights_record_a_hash_of_their_tensors(small_run: Path) -> None:
    tensors, metadata = runs.read_safetensors(small_run / runs.WEIGHTS)
    assert len(metadata["sha256"]) == 64
    assert metadata["sha256"] == runs.weights.tensors_sha256(tensors)
    _, ckpt_metadata = runs.read_safetensors(small_run / runs.CHECKPOINT)
    assert len(ckpt_metadata["sha256"]) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a verified file loads without a word
        runs.load_model(small_run)
        runs.load_checkpoint(small_run)


def test_rotten_weights_are_refused_everywhere(run_copy: Path, digit_png: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rot(run_copy / runs.WEIGHTS)
    with pytest.raises(UserError, match="re-train"):
        runs.load_model(run_copy)
    assert main(["evaluate", str(run_copy), "--threads", "1", "--json"]) == 2
    one_error(capsys, str(run_copy / runs.WEIGHTS), "damaged", "SHA-256", "restore")
    assert main(["predict", str(run_copy), str(digit_png)]) == 2
    one_error(capsys, str(run_copy / runs.WEIGHTS), "damaged")


def test_one_changed_weight_is_refused(tmp_path: Path) -> None:
    model = build_model("fc")
    runs.save_run(tmp_path, model=model, model_name="fc", model_config={},
                  config=runs.RunConfig(model="fc"))
    path = tmp_path / runs.WEIGHTS
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01                                   # one bit of one float
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        runs.load_model(tmp_path)


def test_a_rotten_checkpoint_refuses_to_resume(run_copy: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / runs.METRICS).unlink()
    rot(run_copy / runs.CHECKPOINT)
    with pytest.raises(UserError, match="damaged"):
        runs.load_checkpoint(run_copy)
    assert main(["train", "fc", "--out", str(run_copy), "--resume"]) == 2
    one_error(capsys, str(run_copy / runs.CHECKPOINT), "damaged", "restore it from a copy")
    assert not (run_copy / runs.METRICS).exists()


def test_a_run_written_before_hashes_loads_with_one_note(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(runs.UnverifiedWeightsWarning, match="carries no hash"):
        runs.load_model(V010)
    with pytest.warns(runs.UnverifiedWeightsWarning, match="carries no hash"):
        runs.load_checkpoint(V010)
    assert main(["evaluate", str(V010), "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["test_accuracy"] == 0.7808
    assert len(notes(captured.err)) == 1 and "carries no hash" in captured.err
    assert captured.err.count("\n") == 1, captured.err   # the note, and no warning's source


# --- 2. a run stopped before its first epoch: resumable and replaceable ----------------------

def test_resume_into_an_empty_folder_trains_afresh(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    assert main(["train", "fc", *SMALL, "--out", str(out), "--resume"]) == 0
    assert "holds no run yet" in capsys.readouterr().err
    assert runs.read_metrics(out).epochs == 1


@pytest.fixture
def unsaved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A run stopped before its first epoch was saved: only config.json (and TensorBoard
    logs), as Ctrl-C during the first epoch leaves it. (A diverged start leaves nothing.)"""
    out = tmp_path / "run"
    assert main(["train", "fc", *SMALL, "--optimizer", "sgd", "--lr", "1e30",
                 "--out", str(out)]) == 2
    one_error(capsys, "the loss became")
    assert not out.exists()                    # refused or diverged: its folder is removed
    assert main(["train", "fc", *SMALL, "--optimizer", "sgd", "--lr", "0.05",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    for f in out.iterdir():
        if f.is_file() and f.name != runs.CONFIG:
            f.unlink()
    assert (out / runs.CONFIG).is_file() and not (out / runs.CHECKPOINT).exists()
    return out


def test_train_reuses_a_folder_that_saved_no_epoch(unsaved: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "fc", *SMALL, "--lr", "0.1", "--out", str(unsaved)]) == 0
    assert any("reusing" in n for n in notes(capsys.readouterr().err))
    assert runs.read_config(unsaved).train.lr == 0.1          # the new run's config
    assert runs.read_metrics(unsaved).epochs == 1


def test_resume_of_a_run_that_saved_no_epoch_starts_it_again(
        unsaved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = runs.read_config(unsaved).train
    # with its recorded settings, from the first epoch
    assert main(["train", "fc", "--out", str(unsaved), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "no epoch of" in err and "from the first epoch" in err
    assert runs.read_config(unsaved).train == before
    assert runs.read_metrics(unsaved).epochs == 1


def test_a_run_with_saved_epochs_is_not_replaced_and_names_the_command(
        run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (run_copy / runs.WEIGHTS).read_bytes()
    assert main(["train", "fc", *SMALL, "--out", str(run_copy)]) == 2
    one_error(capsys, "already holds files", f"`mnistlab train fc --out {run_copy} --resume`")
    assert (run_copy / runs.WEIGHTS).read_bytes() == before


def test_resume_of_a_missing_folder_says_how_to_start(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "fc", "--out", str(tmp_path / "nope"), "--resume"]) == 2
    one_error(capsys, "no such run folder", "leave out --resume")


# --- 3. an unfinished run says so when it is used -------------------------------------------

class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        raise KeyboardInterrupt        # what Ctrl-C does, after epoch 1's files are saved


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "fc-unfinished"
    with pytest.raises(TrainingInterrupted):
        fit(small_config(epochs=5), run_dir, callbacks=[_StopAfterFirstEpoch()])
    assert not (run_dir / runs.METRICS).exists()
    return run_dir


def test_evaluate_says_a_run_is_unfinished(unfinished: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(unfinished), "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert notes(captured.err) == [
        f"note: {unfinished} is unfinished (1 of 5 epochs); resume with "
        f"`mnistlab train fc --out {unfinished} --resume`"]
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["finished"] is False
    assert (result["epochs_done"], result["epochs_planned"]) == (1, 5)


def test_predict_says_a_run_is_unfinished(unfinished: Path, digit_png: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(unfinished), str(digit_png)]) == 0
    assert any("is unfinished (1 of 5 epochs)" in n for n in notes(capsys.readouterr().err))


def test_a_finished_run_has_no_note(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(small_run), "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert notes(captured.err) == []
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["finished"] is True and result["epochs_done"] == result["epochs_planned"] == 1


def test_commands_given_no_run_pick_only_finished_runs(small_run: Path, unfinished: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path))
    shutil.copytree(unfinished, tmp_path / "unfinished")
    assert runs.find_best_run(tmp_path) is None
    shutil.copytree(small_run, tmp_path / "finished")
    assert runs.find_best_run(tmp_path) == tmp_path / "finished"
