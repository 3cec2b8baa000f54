"""The channels-last engine: PyTorch autograd with a conv model in channels_last in fp32 (in bf16
autograd already is), a candidate of --engine auto there: its layout in training, in the
saved run and when the run is loaded again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_tensors
from mnistlab.train.evaluation import load_run
from mnistlab.train.fit import fit
from mnistlab.train.phases import evaluate

SMALL = dict(epochs=1, limit=512, test_limit=200, threads=1, batch_size=64, seed=3,
             precision="fp32")
CL = torch.channels_last


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_it_trains_in_channels_last_and_the_run_loads_so(tmp_path: Path) -> None:
    config = TrainConfig(model="speedrun", engine="channels-last", **SMALL)
    result = fit(config, tmp_path / "run")
    assert result.metrics.engine == "channels-last"
    assert all(w.is_contiguous(memory_format=CL) for w in _convs(result.model))
    assert runs.read_config(tmp_path / "run").engine == "channels-last"
    loaded = load_run(tmp_path / "run")                   # saved contiguous, loaded as trained
    assert all(w.is_contiguous(memory_format=CL) for w in _convs(loaded.model))
    for p, q in zip(loaded.model.parameters(), result.model.parameters(), strict=True):
        assert torch.equal(p, q)
    x, y = load_tensors(config)[2:]
    again = evaluate(loaded.model, x, y, precision="fp32")
    assert again["test_accuracy"] == result.metrics.test_accuracy


def test_autograd_in_fp32_keeps_the_default_layout() -> None:
    result = fit(TrainConfig(model="speedrun", engine="autograd", **SMALL))
    assert all(w.is_contiguous() and not w.is_contiguous(memory_format=CL)
               for w in _convs(result.model) if w.shape[1] > 1)


def test_a_model_without_convolutions_is_refused() -> None:
    with pytest.raises(UserError, match=r"channels-last engine.*fc has none"):
        fit(TrainConfig(model="fc", engine="channels-last", **SMALL))


def test_auto_measures_it_against_autograd_for_a_conv_model_outside_the_fused_family(
        tmp_path: Path) -> None:
    fit(TrainConfig(model="speedrun", **SMALL), tmp_path / "run")
    choice = runs.read_config(tmp_path / "run").engine_choice
    assert choice is not None and choice.reason.startswith("probe:")
    assert set(choice.timings) == {"autograd", "channels-last"}
