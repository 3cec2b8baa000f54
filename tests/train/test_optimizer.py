"""What TrainConfig's optimizer settings do to the optimizer and schedule fit() builds."""

from __future__ import annotations

import pytest
from torch import nn

from mnistlab.cli import main
from mnistlab.train.build import make_optimizer, make_scheduler
from mnistlab.train.config import TrainConfig


def _betas_over_a_onecycle(**settings: object) -> list[tuple[float, float]]:
    config = TrainConfig(optimizer="adam", schedule="onecycle", epochs=1, **settings)
    optimizer = make_optimizer(nn.Linear(3, 2), config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
    seen = []
    for _ in range(9):
        optimizer.step()
        scheduler.step()
        seen.append(tuple(optimizer.param_groups[0]["betas"]))
    return seen


def test_adam_betas_come_from_the_config() -> None:
    optimizer = make_optimizer(nn.Linear(3, 2), TrainConfig(optimizer="adamw", beta1=0.5,
                                                               beta2=0.8))
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.8)
    # no cycling: the betas stay as set while the learning rate cycles
    assert set(_betas_over_a_onecycle(beta1=0.7, beta2=0.9, cycle_momentum=False)) == {(0.7, 0.9)}


def test_onecycle_cycles_beta1_by_default_as_pytorch_does() -> None:
    beta1s = [b1 for b1, b2 in _betas_over_a_onecycle(beta1=0.7, beta2=0.9)]
    assert min(beta1s) == pytest.approx(0.85, abs=0.02) and max(beta1s) <= 0.95
    assert len(set(beta1s)) > 3


@pytest.mark.parametrize("flag", ["--beta1", "--beta2"])
def test_a_beta_of_one_is_refused_in_one_line(flag: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "fc", flag, "1", "--epochs", "1", "--limit", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and flag in err and len(err.splitlines()) == 1
