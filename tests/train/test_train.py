"""fit / evaluate / predict_proba on real MNIST subsets: accuracy, determinism, exact resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.train.callbacks import KerasLogger, epoch_line, eval_line
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_tensors
from mnistlab.train.fit import Callback, TrainInfo, TrainingInterrupted, fit
from mnistlab.train.phases import TrainingDiverged, evaluate, predict_proba
from mnistlab.train.presets import preset_overrides

# Small and single-threaded: fast, and bit-for-bit repeatable on one machine.
SMALL = {"limit": 2000, "test_limit": 1000, "threads": 1, "precision": "fp32"}


def seed_config(model: str, **overrides: object) -> TrainConfig:
    return TrainConfig(model=model, **{**preset_overrides("seed", model), **SMALL, **overrides})


def _figures(history: list[runs.HistoryRow]) -> list[dict]:
    # Everything but wall-clock timings must repeat exactly.
    timing = {"seconds", "eval_seconds", "images_per_second"}
    return [{k: v for k, v in row.to_dict().items() if k not in timing} for row in history]


def test_fc_seed_preset_learns_on_a_subset() -> None:
    result = fit(seed_config("fc", limit=10_000, epochs=2))
    assert result.metrics.test_accuracy > 0.85
    assert result.metrics.epochs == 2 and len(result.history) == 2
    assert result.history[1].train_loss < result.history[0].train_loss


def test_cnn_seed_preset_learns_on_a_subset() -> None:
    # The seed's own precision for the CNN (bf16 on CPUs that have it, else fp32).
    result = fit(seed_config("cnn", epochs=1, precision="auto"))
    assert result.metrics.test_accuracy > 0.75
    assert result.metrics.precision in ("bf16", "fp32")


def test_same_seed_same_figures_other_seed_other_figures() -> None:
    a = fit(seed_config("fc", epochs=1, seed=3))
    b = fit(seed_config("fc", epochs=1, seed=3))
    c = fit(seed_config("fc", epochs=1, seed=4))
    assert _figures(a.history) == _figures(b.history)
    assert _figures(a.history) != _figures(c.history)


class InterruptAfter(Callback):
    """Simulates Ctrl-C once ``epochs`` epochs are finished and saved."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        if row.epoch == self.epochs:
            raise KeyboardInterrupt


@pytest.mark.parametrize("overrides", [
    {"model": "fc", "optimizer": "adam", "lr": 3e-3, "schedule": "onecycle"},
    {"model": "fc", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
    {"model": "cnn", "limit": 256, "test_limit": 100},     # Adam, the seed's CNN recipe
    {"model": "cnn", "limit": 256, "test_limit": 100,      # ... in bf16: channels_last weights
     "precision": "bf16", "engine": "autograd"},           # meet moments restored contiguous
    {"model": "cnn", "limit": 256, "test_limit": 100,      # ... through the fused bf16 step
     "precision": "bf16", "engine": "fused"},
    {"model": "cnn", "limit": 256, "test_limit": 100,      # ... with Winograd convolutions
     "precision": "bf16", "engine": "winograd"},
    {"model": "cnn", "limit": 256, "test_limit": 100,      # the fused step in fp32, and
     "precision": "fp32", "engine": "winograd"},
    {"model": "cnn", "limit": 256, "test_limit": 100,      # autograd in channels_last in fp32
     "precision": "fp32", "engine": "channels-last"},
])
def test_resume_equals_uninterrupted(tmp_path: Path, overrides: dict) -> None:
    config = TrainConfig(**{**SMALL, "epochs": 2, "preset": "test", **overrides})
    whole = fit(config, tmp_path / "whole")
    with pytest.raises(TrainingInterrupted) as info:
        fit(config, tmp_path / "cut", callbacks=[InterruptAfter(1)])
    assert info.value.epochs_done == 1
    assert not (tmp_path / "cut" / runs.METRICS).exists()
    (tmp_path / "cut" / ".checkpoint.safetensors.x1.tmp").write_bytes(b"half")  # a kill -9
    resumed = fit(config, tmp_path / "cut", resume=True)
    assert _figures(resumed.history) == _figures(whole.history)
    assert resumed.metrics.test_accuracy == whole.metrics.test_accuracy
    assert resumed.metrics.test_loss == whole.metrics.test_loss
    for p, q in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not list((tmp_path / "cut").glob(".*.tmp"))


def test_a_resume_on_other_threads_is_recorded_in_config_json(tmp_path: Path) -> None:
    config = seed_config("fc", epochs=2, threads=1)
    with pytest.raises(TrainingInterrupted):
        fit(config, tmp_path, callbacks=[InterruptAfter(1)], command="first")
    assert runs.read_config(tmp_path).resumed == []
    fit(dataclasses.replace(config, threads=2), tmp_path, resume=True, command="again")
    record = runs.read_config(tmp_path)
    assert record.threads == 1 and record.command == "first"      # how it started
    (resumed,) = record.resumed                                     # and how it went on
    assert (resumed.epoch, resumed.threads, resumed.command) == (1, 2, "again")
    assert resumed.environment.device == "cpu" and resumed.environment.threads == 2


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    config = seed_config("fc", epochs=2)
    with pytest.raises(TrainingInterrupted):
        fit(config, tmp_path, callbacks=[InterruptAfter(1)])
    with pytest.raises(UserError, match=r"lr=0\.1"):
        fit(dataclasses.replace(config, lr=0.5), tmp_path, resume=True)


def test_resume_accepts_a_run_older_than_a_setting(tmp_path: Path) -> None:
    # config.json written before `engine` existed: the run used what is now the default
    config = seed_config("fc", epochs=2)
    with pytest.raises(TrainingInterrupted):
        fit(config, tmp_path, callbacks=[InterruptAfter(1)])
    saved = json.loads((tmp_path / runs.CONFIG).read_text())
    del saved["train"]["engine"]
    (tmp_path / runs.CONFIG).write_text(json.dumps(saved))
    assert fit(config, tmp_path, resume=True).metrics.epochs == 2
    with pytest.raises(UserError, match="engine"):
        fit(dataclasses.replace(config, engine="autograd"), tmp_path, resume=True)


class BlowUpAfter(Callback):
    """Sets an absurd learning rate after epoch 1, so that epoch 2 diverges."""

    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = 1e12


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    config = seed_config("fc", epochs=3)
    with pytest.raises(TrainingDiverged, match=r"loss became .* epoch 2/3.*checkpoint \(epoch 1\)"):
        fit(config, tmp_path, callbacks=[BlowUpAfter()])
    ckpt = runs.load_checkpoint(tmp_path)
    assert ckpt.epoch == 1 and len(runs.read_history(tmp_path)) == 1
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())
    assert not (tmp_path / runs.METRICS).exists()


def test_evaluate_and_predict_proba_agree() -> None:
    model = fit(seed_config("fc", epochs=1)).model
    _, _, x, y = load_tensors(TrainConfig(test_limit=500))
    result = evaluate(model, x, y)
    assert result["steps"] == 16                       # ceil(500 / 32), Keras's default batch
    proba = predict_proba(model, x)
    assert proba.shape == (500, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (proba.argmax(1) == y.numpy()).mean() == pytest.approx(result["test_accuracy"])
    images = (x[:7, 0] * 255).round().to(torch.uint8).numpy()   # uint8 (7, 28, 28) works too
    np.testing.assert_allclose(predict_proba(model, images), proba[:7], atol=1e-6)


def test_keras_style_lines(capsys: pytest.CaptureFixture[str]) -> None:
    row = runs.HistoryRow.from_dict({"epoch": 1, "steps": 938, "seconds": 4.6,
                                     "train_accuracy": 0.84671, "train_loss": 0.56671,
                                     "test_accuracy": 0.9, "test_loss": 0.3})
    assert epoch_line(row, 5) == ("Epoch 1/5  938/938  5s  5ms/step  accuracy: 0.8467  "
                                  "loss: 0.5667  val_accuracy: 0.9000  val_loss: 0.3000")
    # a run with a validation split of its own: these figures are the test set's, so named
    logger = KerasLogger()
    logger.on_train_begin(TrainInfo(
        model="fc", model_config={}, precision="fp32", engine="autograd", warmup_seconds=0.0,
        threads=1, train_images=57_000, test_images=10_000, steps_per_epoch=938,
        parameters=1, run_dir=None, validation_images=3000))
    logger.on_epoch_begin(1, 5, 938)
    logger.on_epoch_end(row)
    shown = capsys.readouterr()
    assert "test_accuracy: 0.9000  test_loss: 0.3000" in shown.out + shown.err
    assert "val_" not in shown.out + shown.err
    line = eval_line({"steps": 313, "seconds": 1.2, "test_accuracy": 0.9689, "test_loss": 0.1065})
    assert line == "313/313  1s  4ms/step  accuracy: 0.9689  loss: 0.1065"


def test_cli_train_json_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "fc", "--limit", "2000", "--test-limit", "1000", "--epochs", "1",
                 "--threads", "1", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("fc: 101,770 parameters")
    assert lines[1].startswith("Epoch 1/1  32/32  ")
    metrics = json.loads(lines[-1])
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "epochs",
                "train_seconds", "run_dir", "images_per_second", "precision"):
        assert key in metrics
    assert metrics["run_dir"] == str(out.resolve()) and metrics["preset"] == "seed"
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["optimizer"] == "sgd" and config["train"]["lr"] == 0.1
    assert config["precision"] == "fp32" and config["environment"]["torch"] == torch.__version__
    assert main(["evaluate", str(out), "--threads", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("313/313  ")           # the whole test set, Keras's batch of 32
    assert json.loads(lines[-1])["test_images"] == 10_000


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_kill_exits_cleanly_and_says_how_to_resume(tmp_path: Path, stop: int,
                                                            code: int) -> None:
    # SIGTERM: kill, timeout, a batch scheduler; killed outright, a run said nothing
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "train", "fc", "--limit", "20000", "--test-limit",
         "100", "--epochs", "1000", "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a Ctrl-C must reach it as in a terminal: an earlier test's library (Ray's driver)
        # may leave SIGINT ignored in this process, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while not (out / runs.CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err
    assert f"--out {out} --resume" in err
    assert runs.load_checkpoint(out).epoch >= 1


def test_fashion_mnist_trains_when_available() -> None:
    from mnistlab.data import load_dataset

    try:
        load_dataset("fashion-mnist", "test", download=False)
    except UserError:
        pytest.skip("Fashion-MNIST is not in the data cache")
    result = fit(seed_config("fc", dataset="fashion-mnist", limit=10_000, epochs=1))
    assert result.metrics.dataset == "fashion-mnist"
    assert result.metrics.test_accuracy > 0.65       # 10 clothing classes; chance is 0.10


def test_tensorboard_event_files_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")                 # the optional `tensorboard` extra
    from mnistlab.train.callbacks import TensorBoardLogger

    fit(seed_config("fc", epochs=1), tmp_path, callbacks=[TensorBoardLogger(tmp_path)])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_evaluation_only_at_the_end_writes_strict_json(tmp_path: Path) -> None:
    result = fit(seed_config("fc", epochs=2, eval_each_epoch=False), tmp_path)
    first, last = result.history
    assert first.test_accuracy is None and "val_accuracy" not in epoch_line(first, 2)
    assert last.test_accuracy == result.metrics.test_accuracy

    def no_nan(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    json.loads((tmp_path / "history.json").read_text(), parse_constant=no_nan)
    json.loads((tmp_path / "metrics.json").read_text(), parse_constant=no_nan)
