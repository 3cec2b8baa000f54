"""Run folders: weights round-trip without pickle, best-run lookup, every bad input: exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.fit import fit


@pytest.fixture(scope="module")
def fc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "fc-run"
    fit(TrainConfig(model="fc", optimizer="sgd", lr=0.1, epochs=1, limit=2000, test_limit=500,
                    threads=1, precision="fp32"), run_dir)
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_run_folder_contents(fc_run: Path) -> None:
    names = {p.name for p in fc_run.iterdir()}
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "history.csv",
            "history.json", "metrics.json"} <= names
    assert not any(n.endswith(".tmp") for n in names)  # atomic writes leave no temp files
    assert runs.read_config(fc_run).model == "fc"
    history = runs.read_history(fc_run)
    assert [r.epoch for r in history] == [1]
    assert (fc_run / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    metrics = runs.read_metrics(fc_run)
    assert metrics.test_accuracy == history[-1].test_accuracy


def test_load_model_gives_the_trained_model(fc_run: Path) -> None:
    model = runs.load_model(fc_run)
    assert not model.training
    same = runs.load_model(fc_run / runs.WEIGHTS)          # a bare weights file works too
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), same(x))
    assert not torch.equal(model(x), build_model("fc")(x))


def test_save_run_round_trip(tmp_path: Path) -> None:
    model = build_model("cnn", hidden=32)
    runs.save_run(tmp_path, model=model, model_name="cnn", model_config={"hidden": 32},
                  config=runs.RunConfig(model="cnn"),
                  history=[runs.HistoryRow(epoch=1, train_loss=0.25)],
                  metrics=runs.RunMetrics(test_accuracy=0.5))
    loaded = runs.load_model(tmp_path)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model.eval()(x), loaded(x))
    assert runs.read_metrics(tmp_path) == runs.RunMetrics(test_accuracy=0.5)
    assert runs.read_history(tmp_path) == [runs.HistoryRow(epoch=1, train_loss=0.25)]


def test_a_run_trained_on_the_cpu_saves_cpu_tensors_and_loads_on_the_cpu(
        tmp_path: Path) -> None:
    from mnistlab.train.evaluation import evaluate_run, load_run

    run_dir = tmp_path / "on-cpu"
    result = fit(TrainConfig(model="fc", epochs=1, limit=500, test_limit=200, threads=1,
                             precision="fp32", device="cpu"), run_dir)
    # the weight file holds CPU tensors (a GPU run is saved from the CPU side too), so it
    # loads on any machine: on the CPU first, then moved to the device asked for
    tensors, _ = runs.read_safetensors(run_dir / runs.WEIGHTS)
    assert tensors and {t.device.type for t in tensors.values()} == {"cpu"}
    loaded = load_run(run_dir, torch.device("cpu"))
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    assert runs.read_config(run_dir).environment.device == "cpu"
    assert evaluate_run(loaded, test_limit=200).test_accuracy == result.metrics.test_accuracy


def test_checkpoint_round_trip(fc_run: Path) -> None:
    ckpt = runs.load_checkpoint(fc_run)
    assert ckpt.epoch == 1 and set(ckpt.rng) == {"batches", "torch", "augment"}
    assert set(ckpt.model_state) == set(build_model("fc").state_dict())
    assert ckpt.history == runs.read_history(fc_run)


def _metrics_run(root: Path, name: str, acc: float, dataset: str = "mnist") -> None:
    runs.save_run(root / name, model=build_model("fc"), model_name="fc", model_config={},
                  config=runs.RunConfig(model="fc"),
                  metrics=runs.RunMetrics(test_accuracy=acc, dataset=dataset))


def test_find_best_run(tmp_path: Path) -> None:
    assert runs.find_best_run(tmp_path) is None
    _metrics_run(tmp_path, "a", 0.97)
    _metrics_run(tmp_path, "b", 0.985)
    _metrics_run(tmp_path, "c", 0.99, dataset="fashion-mnist")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    assert runs.find_best_run(tmp_path) == tmp_path / "b"
    assert runs.find_best_run(tmp_path, dataset=None) == tmp_path / "c"


def test_best_run_also_looks_in_the_reports_runs(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # After `make run` the only trained models are the report's: predict and serve find them.
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNISTLAB_REPORT_DIR", str(tmp_path / "report"))
    with pytest.raises(UserError, match="no trained run found"):
        runs.best_run()
    _metrics_run(tmp_path / "runs", "mine", 0.97)
    _metrics_run(tmp_path / "report" / "runs", "cnn-seed0", 0.988)
    assert runs.best_run() == tmp_path / "report" / "runs" / "cnn-seed0"


# --- bad input: one line on stderr, exit 2, nothing written ---------------------------------

def _fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:         # argparse rejects a malformed flag value this way
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(("argv", "needles"), [
    (["train", "resnet"], ("MODEL must be one of: ", "got 'resnet'")),
    (["train", "fc", "--optimizer", "lbfgs"],
     ("--optimizer must be one of: sgd, adam, adamw, rmsprop; got 'lbfgs'",)),
    (["train", "fc", "--epochs", "0"], ("--epochs must be a whole number >= 1, got 0",)),
    (["train", "fc", "--batch-size", "-3"], ("--batch-size must be a whole number >= 1",)),
    (["train", "fc", "--lr", "-1"], ("--lr must be a finite number > 0, got -1",)),
    (["train", "fc", "--precision", "fp8"], ("--precision must be one of: ", "got 'fp8'")),
    (["train", "fc", "--preset", "nope"], ("unknown preset 'nope'",)),
    (["train", "fc", "--augment", "sideways"], ("--augment must be one of: ", "got 'sideways'")),
    (["train", "fc", "--dataset", "cifar"], ("cifar",)),
    (["train", "fc", "--epochs", "two"], ("invalid int value",)),
    (["train", "fc", "--model-config", "[1]"], ("JSON object",)),
    (["train", "fc", "--resume"], ("--resume needs --out",)),
])
def test_bad_training_arguments(argv: list[str], needles: tuple[str, ...], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path))
    _fails_cleanly(argv, capsys, *needles)
    assert list(tmp_path.iterdir()) == []                   # no run folder was created


def _digest(folder: Path) -> dict[str, str]:
    # Every file below the run (TensorBoard writes a subfolder when it is installed).
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def test_train_into_an_existing_run_overwrites_nothing(fc_run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = _digest(fc_run)
    _fails_cleanly(["train", "fc", "--out", str(fc_run)], capsys, "already holds files")
    _fails_cleanly(["train", "fc", "--out", str(fc_run), "--resume", "--lr", "0.3"], capsys,
                   "different settings", "lr=0.1")
    _fails_cleanly(["train", "cnn", "--out", str(fc_run), "--resume"], capsys, "of model 'fc'")
    assert _digest(fc_run) == before


def test_evaluate_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_cleanly(["evaluate", str(tmp_path / "nope")], capsys, "not found")


def test_evaluate_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    _fails_cleanly(["evaluate", str(tmp_path)], capsys, "not an mnistlab run")


def test_evaluate_corrupt_weights(fc_run: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    (run / runs.WEIGHTS).write_bytes(b"\x00garbage" * 100)
    before = _digest(run)
    _fails_cleanly(["evaluate", str(run)], capsys, "damaged")
    assert _digest(run) == before


def test_evaluate_truncated_weights(fc_run: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    data = (run / runs.WEIGHTS).read_bytes()
    (run / runs.WEIGHTS).write_bytes(data[: len(data) // 2])
    _fails_cleanly(["evaluate", str(run)], capsys, "damaged")


def test_evaluate_weights_without_mnistlab_metadata(fc_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    save_file(build_model("fc").state_dict(), str(run / runs.WEIGHTS))   # a plain safetensors
    _fails_cleanly(["evaluate", str(run)], capsys, "not an mnistlab model file")


def test_evaluate_weights_of_another_architecture(fc_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    # cnn tensors whose metadata claims "fc": the shapes give them away
    data = runs.weights_bytes(build_model("cnn"), "fc", {})
    (run / runs.WEIGHTS).write_bytes(data)
    _fails_cleanly(["evaluate", str(run)], capsys, "another architecture")


def test_evaluate_run_mixing_two_models(fc_run: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    runs.save_weights(run / runs.WEIGHTS, build_model("cnn"), "cnn", {})
    _fails_cleanly(["evaluate", str(run)], capsys, "mixes two runs")


def test_load_model_raises_user_error_on_bad_config(fc_run: Path, tmp_path: Path) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    (run / runs.CONFIG).write_text("{truncated")
    with pytest.raises(UserError, match="config"):
        runs.load_model(run)


def test_corrupt_checkpoint_refuses_to_resume(fc_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fc_run, tmp_path / "run")
    (run / runs.CHECKPOINT).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    (run / runs.METRICS).unlink()     # unfinished: a finished run has nothing to resume
    config = json.loads((run / runs.CONFIG).read_text())["train"]
    argv = ["train", "fc", "--out", str(run), "--resume"]
    assert config["epochs"] == 1
    _fails_cleanly(argv, capsys, "checkpoint")


def test_evaluate_best(fc_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path))
    _fails_cleanly(["evaluate", "best"], capsys, "no trained run found")
    copy_run(fc_run, tmp_path / "fc-run")
    assert main(["evaluate", "best", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["run_dir"] == str(tmp_path / "fc-run")
