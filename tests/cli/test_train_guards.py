"""What `train` and its neighbours refuse, and what a failed or interrupted start leaves behind:
model settings that cannot read a picture, a diverged run, a folder another training holds,
a resume whose files lag its checkpoint, and JSON that strict readers accept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnistlab import atomic, runs
from mnistlab.cli import main

pytestmark = pytest.mark.timeout(180)

TINY = ["--epochs", "1", "--limit", "300", "--test-limit", "100", "--threads", "1"]


def _one_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("model", "config", "words"), [
    ("cnn", {"widths": [8, 8, 8, 8, 8, 8]}, ("cannot read a 28x28 picture",)),
    ("cnn", {"hidden": 0}, ("hidden must be a whole number >= 1",)),
    ("fc", {"hidden": 3.5}, ("hidden must be a whole number >= 1",)),
    ("fc", {"hidden": "abc"}, ("hidden",)),
    ("cnn", {"widths": []}, ("widths must be a list",)),
    ("best", {"dropout": 1.5}, ("dropout must be a number in [0, 1)",)),
])
def test_model_settings_that_cannot_train_are_one_line_and_write_nothing(
        model: str, config: dict, words: tuple[str, ...], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", model, "--model-config", json.dumps(config), "--out", str(out),
                 *TINY]) == 2
    _one_error(capsys, "bad model config", *words)
    assert not out.exists()
    assert main(["summary", model, "--config", json.dumps(config)]) == 2
    _one_error(capsys, "bad model config")


def test_init_is_chosen_in_one_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    assert main(["train", "fc", "--init", "torch", "--model-config", '{"init": "keras"}',
                 "--out", str(tmp_path / "r"), *TINY]) == 2
    _one_error(capsys, "--init")


def test_a_diverged_start_leaves_nothing_and_json_never_holds_nan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new"
    assert main(["train", "fc", "--lr", "1e30", "--out", str(new), "--json", *TINY]) == 2
    _one_error(capsys, "the loss became", "may be too high")
    assert not new.exists()                         # this command made it: removed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "fc", "--lr", "1e30", "--out", str(empty), *TINY]) == 2
    capsys.readouterr()
    assert empty.is_dir() and not any(empty.iterdir())   # the user's folder stays, empty
    assert main(["scratch", "--lr", "1e30", "--epochs", "1", "--limit", "500",
                 "--json"]) == 2
    _one_error(capsys, "the loss became")


def test_ctrl_c_before_the_first_epoch_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.train import fit as fit_module

    def interrupted(*args: object, **kwargs: object) -> None:   # Ctrl-C in the engine probe
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_module, "choose_engine", interrupted)
    new = tmp_path / "new"
    assert main(["train", "cnn", "--out", str(new), *TINY]) == 130
    assert "nothing is kept" in capsys.readouterr().err
    assert not new.exists()                         # no empty run folder to trip over


def test_bf16_asked_for_where_it_is_emulated_is_said(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from mnistlab.train.device import native_bf16

    assert main(["train", "fc", "--precision", "bf16", "--out", str(tmp_path / "r"),
                 *TINY]) == 0
    said = "this CPU has no native bf16" in capsys.readouterr().err
    assert said == (not native_bf16("cpu"))     # a note where emulated, silence where native


def test_strict_json_writes_null_for_nan_and_infinity(tmp_path: Path) -> None:
    value = {"loss": float("nan"), "rows": [1.5, float("inf")], "n": np.float32("nan"),
             "a": np.arange(2)}
    atomic.write_json(tmp_path / "m.json", value)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert back == {"loss": None, "rows": [1.5, None], "n": None, "a": [0, 1]}


def test_validation_mistakes_name_validation(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r")
    assert main(["train", "fc", "--validation", "60000", "--out", out, *TINY]) == 2
    _one_error(capsys, "--validation 60,000", "every one of the 60,000")
    assert main(["train", "fc", "--validation", "10000", "--limit", "55000", "--out",
                 out]) == 2
    _one_error(capsys, "--limit", "left after --validation 10,000")


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="advisory folder locks are POSIX")
def test_a_folder_another_training_holds_is_refused_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / runs.CONFIG).write_text("{}")   # what a run leaves before its first epoch
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["train", "fc", "--out", str(folder), *TINY]) == 2
        _one_error(capsys, "is in use")
        assert (folder / runs.CONFIG).read_text() == "{}"     # not cleared as a leftover
        assert main(["train", "fc", "--out", str(folder), "--resume", *TINY]) == 2
        _one_error(capsys, "is in use")
    finally:
        holder.kill()
        holder.wait(timeout=10)
    time.sleep(0.1)
    assert main(["train", "fc", "--out", str(folder), *TINY]) == 0   # free again


def _trained_fc(tmp_path: Path, epochs: int) -> tuple[Path, list[str]]:
    """A small fc run trained for ``epochs`` at one thread, and the command that trained it."""
    run = tmp_path / "run"
    args = ["train", "fc", "--out", str(run), "--epochs", str(epochs), "--limit", "300",
            "--test-limit", "100", "--threads", "1"]
    assert main(args) == 0
    return run, args


def test_resume_writes_again_what_lagged_its_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, args = _trained_fc(tmp_path, epochs=2)
    full = json.loads((run / "history.json").read_text())
    # an interrupt between the checkpoint and the files after it, at the very end
    (run / runs.METRICS).unlink()
    (run / "history.json").write_text(json.dumps(full[:1]))
    assert main([*args, "--resume", "--json"]) == 0
    capsys.readouterr()
    assert len(json.loads((run / "history.json").read_text())) == 2
    assert json.loads((run / runs.METRICS).read_text())["epochs"] == 2


def test_resuming_a_finished_run_rewrites_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, args = _trained_fc(tmp_path, epochs=1)
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    capsys.readouterr()
    # on other threads: it used to record them beside the first run's speed, and its weights
    assert main([*args[:-1], "2", "--resume", "--json"]) == 0
    out = capsys.readouterr().out
    assert "nothing to resume" in out
    assert json.loads(out.splitlines()[-1])["epochs"] == 1
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before


def test_an_ensemble_names_each_run_once(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "r"
    assert main(["train", "fc", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--ensemble", str(run), str(run)]) == 2
    _one_error(capsys, "twice")
    # the ensemble's own options on one run: refused, not silently ignored
    assert main(["evaluate", str(run), "--select", "validation"]) == 2
    _one_error(capsys, "--select chooses an ensemble's members")
    assert main(["evaluate", str(run), "--save", str(tmp_path / "e")]) == 2
    _one_error(capsys, "--save writes an ensemble")


def test_an_ensemble_of_an_unfinished_run_is_noted_and_not_saved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done, _ = _trained_fc(tmp_path, epochs=1)
    capsys.readouterr()
    stopped = tmp_path / "stopped"                  # as a run still training leaves its folder
    shutil.copytree(done, stopped)
    config = json.loads((stopped / runs.CONFIG).read_text())
    config["train"]["epochs"] = 3
    (stopped / runs.CONFIG).write_text(json.dumps(config))
    (stopped / runs.METRICS).unlink()
    saved = tmp_path / "ens"
    assert main(["evaluate", "--ensemble", str(done), str(stopped), "--save", str(saved)]) == 2
    _one_error(capsys, "--save", "unfinished (1 of 3 epochs)", "--resume")
    assert not saved.exists()
    assert main(["evaluate", "--ensemble", str(done), str(stopped)]) == 0
    err = capsys.readouterr().err
    assert f"note: {stopped.resolve()} is unfinished (1 of 3 epochs)" in err
    assert f"{done.resolve()} is unfinished" not in err


def test_sweep_refuses_zero_for_its_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--epochs", "--limit", "--test-limit"):
        assert main(["sweep", "fc", "--executor", "local", flag, "0"]) == 2
        _one_error(capsys, flag, ">= 1")
