"""--device auto|cpu|cuda|mps: where a run trains and evaluates; on the CPU nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import DEVICES, available, describe, resolve_device, to_device
from mnistlab.train.precision import resolve_engine

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
# fp32 fc on 2,000 images, one thread: bit-for-bit repeatable on one machine
SMALL = ["fc", "--epochs", "1", "--limit", "2000", "--test-limit", "500", "--threads", "1",
         "--precision", "fp32", "--json"]


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_auto_picks_the_first_available_device() -> None:
    expected = "cuda" if available("cuda") else "mps" if available("mps") else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert describe(torch.device("cpu")) == "cpu"
    with pytest.raises(UserError, match="--device must be one of"):
        resolve_device("tpu")


def test_the_cli_offers_the_same_devices_as_the_config() -> None:
    from mnistlab.cli import build_parser

    parser = build_parser()
    for command in (["train", "fc"], ["evaluate", "x"]):
        args = parser.parse_args([*command, "--device", "cpu"])
        assert args.device == "cpu"
    field = next(f for f in TrainConfig.__dataclass_fields__.values() if f.name == "device")
    assert tuple(field.metadata["choices"]) == DEVICES


def test_to_device_on_the_cpu_is_no_copy() -> None:
    x = torch.zeros(3)
    (y,) = to_device(torch.device("cpu"), x)
    assert y is x


@NO_CUDA
def test_device_cuda_without_one_is_one_error_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert not out.exists()


def test_the_fused_engine_is_cpu_only() -> None:
    model = build_model("cnn")
    # on the CPU auto measures (tests/train/test_probe.py); elsewhere only autograd can train
    assert resolve_engine(TrainConfig(engine="auto"), model, "bf16", "cuda") == "autograd"
    with pytest.raises(UserError, match="CPU only"):
        resolve_engine(TrainConfig(engine="fused"), model, "bf16", "cuda")


def test_device_cpu_trains_as_no_flag_and_evaluates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *SMALL, "--out", str(tmp_path / "a")]) == 0
    plain = _last_json(capsys)
    assert main(["train", *SMALL, "--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    on_cpu = _last_json(capsys)
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss"):
        assert on_cpu[key] == plain[key]
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["train"]["device"] == "cpu"
    assert config["environment"]["device"] == "cpu"
    assert isinstance(config["environment"]["isa"], list)
    # a run trained on the CPU evaluates there, with the figures it trained to
    assert main(["evaluate", str(tmp_path / "b"), "--device", "cpu", "--threads", "1",
                 "--json"]) == 0
    evaluated = _last_json(capsys)
    assert evaluated["device"] == "cpu"
    assert evaluated["test_images"] == 10000 and 0.1 < evaluated["test_accuracy"] <= 1


@NO_CUDA
def test_evaluate_device_cuda_without_one(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda")
    # an ensemble too (it evaluates on the CPU, but a device asked for and missing is an error)
    assert main(["evaluate", "--ensemble", str(tmp_path), str(tmp_path), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda")
