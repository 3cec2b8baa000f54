"""`mnistlab sweep --device` and `--gpus-per-trial`: every trial's TrainConfig gets the device,
a Ray trial asks for GPUs when it trains on one; no Ray is started here."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.sweep.executor import RaySettings
from mnistlab.sweep.spec import SweepSpec, parse_grid


def test_every_trial_gets_the_device():
    spec = SweepSpec(models=["fc"], seeds=[0, 1], grid={"lr": [0.01, 0.1]}, device="cpu")
    spec.validate()
    assert {t.config.device for t in spec.trials()} == {"cpu"}
    assert SweepSpec.from_dict(spec.to_dict()).device == "cpu"      # sweep.json keeps it
    assert {t.config.device for t in SweepSpec(models=["fc"]).trials()} == {"auto"}


def test_gpus_per_trial_defaults_to_one_on_cuda_and_zero_elsewhere():
    assert SweepSpec(models=["fc"], device="cuda").gpus() == 1.0
    assert SweepSpec(models=["fc"], device="auto").gpus() == 0.0
    assert SweepSpec(models=["fc"], device="cuda", gpus_per_trial=0.25).gpus() == 0.25
    assert RaySettings(threads_per_trial=2).resources() == {"cpu": 2}
    assert RaySettings(threads_per_trial=2, gpus_per_trial=0.5).resources() == {
        "cpu": 2, "gpu": 0.5}


@pytest.mark.parametrize("changes, message", [
    ({"device": "tpu"}, "--device must be one of"),
    ({"gpus_per_trial": -1.0}, "--gpus-per-trial takes 0"),
    ({"gpus_per_trial": 1.5}, "--gpus-per-trial takes 0"),
    ({"gpus_per_trial": float("nan")}, "--gpus-per-trial takes 0"),
    ({"device": "cpu", "gpus_per_trial": 1.0}, "goes with --device cuda or auto"),
])
def test_bad_device_settings_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        SweepSpec(models=["fc"], **changes).validate()


def test_the_device_is_no_grid_setting():
    with pytest.raises(UserError, match="--device"):
        parse_grid(["device=cpu,cuda"])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_device_cuda_without_one_is_one_line_before_anything_starts(executor, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "s"
    assert main(["sweep", "fc", "--seeds", "1", "--limit", "500", "--epochs", "1",
                 "--executor", executor, "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert not out.exists()


def test_a_local_sweep_on_the_cpu_records_the_device(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", "fc", "--seeds", "1", "--limit", "500", "--test-limit", "200",
                 "--epochs", "1", "--executor", "local", "--device", "cpu", "--quiet",
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [trial] = result["trials"]
    config = runs.read_config(trial["run_dir"])
    assert config.train.device == "cpu" and config.environment.device == "cpu"
